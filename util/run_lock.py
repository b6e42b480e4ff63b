"""One writer per checkpoint folder: the lock file that a training run holds in checkpoints/<name>/.

Two runs writing the same folder (the same --name submitted twice, or a requeued SLURM job started while its
old copy still saves) would interleave their checkpoints and logs. The run holds ``train.lock``, which names
it (host, pid, SLURM job, torchrun run, since when): another run on the folder stops with one line naming
the holder; a lock whose process is no longer running on this host is taken over with a note (a run that
was SIGKILLed or lost power never blocks the next one); and a run of the same SLURM job (a requeued job) or
of the same torchrun launch (an elastic restart) waits for its old copy to let go first
(docs/cluster.md#one-writer-per-checkpoint-folder).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from util.errors import UserError

LOCK_NAME = "train.lock"
# How long a run of the same job waits for its old copy: SLURM gives that copy KillWait (30 s by default)
# between SIGTERM and SIGKILL to save, and starts a requeued job again no sooner than that.
SAME_JOB_WAIT = 120.0
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: where and which process, the SLURM job and torchrun run it belongs to, since when."""

    host: str
    pid: int
    started: str  # the process's start time in clock ticks since boot (/proc/<pid>/stat), "" where unknown
    slurm_job: str
    torchrun_run: str
    since: str
    token: str  # unique per acquisition: release() removes only its own lock

    def describe(self) -> str:
        """Return the holder in words: pid P on host H (SLURM job J), since T."""
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on host {self.host}{job}, since {self.since}"

    def same_job(self, other: Holder) -> bool:
        """Return True when both belong to one SLURM job or one torchrun launch (a restart of the same run)."""
        return bool((self.slurm_job and self.slurm_job == other.slurm_job)
                    or (self.torchrun_run and self.torchrun_run == other.torchrun_run))


def process_start(pid: int) -> str:
    """Return the start time of process pid in clock ticks since boot ("" where /proc does not tell)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def this_process() -> Holder:
    """Return a Holder describing this process now."""
    return Holder(host=socket.gethostname(), pid=os.getpid(), started=process_start(os.getpid()),
                  slurm_job=os.environ.get("SLURM_JOB_ID", ""),
                  torchrun_run=os.environ.get("TORCHELASTIC_RUN_ID", ""),
                  since=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  token=uuid.uuid4().hex)


def running_here(holder: Holder) -> bool:
    """Return True when holder's process is still running on this host (not exited, not a zombie, pid not reused)."""
    try:
        with open(f"/proc/{holder.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    if fields[0] in ("Z", "X"):
        return False
    return not holder.started or fields[19] == holder.started


def read_holder(path: str) -> Holder | None:
    """Return the holder recorded in the lock file path, None when there is none; an unreadable one is a UserError."""
    try:
        with open(path) as f:
            return Holder(**json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"{path}: not a lock file this code wrote ({err}); delete it if no training run uses "
                        f"{os.path.dirname(path)}") from None


@contextlib.contextmanager
def _guard(folder: str) -> Iterator[None]:
    """Within: no other process of this host is between reading and replacing a lock of folder (flock on it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: the lock file alone decides
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _write_new(path: str, holder: Holder) -> bool:
    """Create the lock file path holding holder, only if there is none; return True when this call created it."""
    tmp = f"{path}.{holder.token}"
    with open(tmp, "w") as f:
        json.dump(asdict(holder), f)
        f.write("\n")
    try:
        os.link(tmp, path)  # atomic, and complete from the start: no reader ever sees a half-written lock
        return True
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)


def blocking_holder(folder: str, me: Holder | None = None) -> Holder | None:
    """Return the holder of folder's lock when it is another run still running (or on another host, where
    that cannot be checked) and not of this process's job; None when a run of this process may start.

    A check before anything is written (train.py's options); RunLock.acquire decides for good.
    """
    me = me or this_process()
    holder = read_holder(os.path.join(folder, LOCK_NAME))
    if holder is None or holder.same_job(me) or (holder.host == me.host and not running_here(holder)):
        return None
    return holder


def refusal(folder: str, holder: Holder) -> str:
    """Return the one-line error for a run refused because holder trains in folder."""
    return (f"{folder} is in use by another training run ({holder.describe()}): wait for it to end or choose "
            f"another --name; if that run is gone, delete {os.path.join(folder, LOCK_NAME)}")


class RunLock:
    """The lock of one checkpoint folder, held by this process between acquire() and release()."""

    def __init__(self, folder: str, wait: float = SAME_JOB_WAIT):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.wait = wait
        self.me: Holder | None = None

    def acquire(self) -> None:
        """Take the lock, taking over a dead holder's, after waiting for one of the same job; return None.

        A lock of another run still running (or on another host), or of this job still running on this host
        after the wait, is a UserError naming its holder.
        """
        os.makedirs(self.folder, exist_ok=True)
        me = this_process()
        deadline = time.monotonic() + self.wait
        announced = False
        while True:
            with _guard(self.folder):
                holder = read_holder(self.path)
                if holder is None:
                    if _write_new(self.path, me):
                        self.me = me
                        return
                    continue  # created by a process of another host between the read and the link: look again
                here = holder.host == me.host
                if here and not running_here(holder):
                    print(f"note: {self.path} was left by a run that is no longer running ({holder.describe()}): "
                          "taken over")
                    os.remove(self.path)
                    continue
                if not holder.same_job(me):
                    raise UserError(refusal(self.folder, holder))
                if time.monotonic() >= deadline:
                    if here:
                        raise UserError(f"{self.folder}: an earlier run of this job still holds its lock after "
                                        f"{self.wait:g} s ({holder.describe()}); stop it, or delete {self.path} "
                                        "if it is gone")
                    # Another host, unreachable from here: SLURM started this job again only after ending it there.
                    print(f"note: {self.path} is still held by this job's earlier run on another host "
                          f"({holder.describe()}) after {self.wait:g} s: taken over")
                    os.remove(self.path)
                    continue
            if not announced:
                print(f"waiting up to {self.wait:g} s for this job's earlier run to release {self.path} "
                      f"({holder.describe()})", flush=True)
                announced = True
            time.sleep(POLL_SECONDS)

    def release(self) -> None:
        """Remove the lock if this process still holds it (never another run's); return None."""
        if self.me is None:
            return
        with contextlib.suppress(OSError, UserError), _guard(self.folder):
            holder = read_holder(self.path)
            if holder is not None and holder.token == self.me.token:
                os.remove(self.path)
        self.me = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
