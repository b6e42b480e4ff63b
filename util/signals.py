"""Stops at safe points, in one place: SIGTERM and SIGINT only record that a stop was asked for, the training
loop acts on it between optimisation steps; DataLoader workers leave the stopping to the main process.

A handler that raised at whatever bytecode was running could cut an optimiser step in half (G updated,
D not; or half of Adam's tensors) and then save that as 'latest'. Here a signal sets a flag; the loop
reads it where nothing is half-done. The one place where a signal still raises is a wait for data
(interruptible): a batch not yet trained on can be dropped at any moment.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

# The exit status of a run stopped by each signal: 128 + the signal's number, as a shell reports it.
EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}

_received: int | None = None  # the first stop signal's number, since stop_at_safe_points began
_waiting = False  # inside interruptible()


class StopWaiting(BaseException):
    """A stop signal arrived while the main process waited for data. A BaseException, so that the
    DataLoader's own `except Exception` (which turns errors into 'worker exited unexpectedly') lets it pass."""


def _record(signum: int, frame: object) -> None:
    global _received
    if _received is None:
        _received = signum
    if _waiting:
        raise StopWaiting()


@contextlib.contextmanager
def stop_at_safe_points() -> Iterator[None]:
    """Within: SIGTERM and SIGINT only record a stop (see stop_code); the previous handlers come back after.

    A signal that this process ignores (SIGINT in a background job started with &) stays ignored.
    """
    global _received
    previous = {signum: signal.getsignal(signum) for signum in EXIT_CODES}
    _received = None
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _record)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_code() -> int:
    """Return the exit status asked for by the first stop signal so far: 143 (SIGTERM), 130 (SIGINT), 0 (none)."""
    return EXIT_CODES.get(_received, 0) if _received is not None else 0


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within (a wait for data): a stop signal raises StopWaiting at once, as does one that came before."""
    global _waiting
    if _received is not None:
        raise StopWaiting()
    _waiting = True
    try:
        if _received is not None:  # arrived between the check above and _waiting = True
            raise StopWaiting()
        yield
    finally:
        _waiting = False


def data_worker_signals(worker_id: int) -> None:
    """Set a DataLoader worker's signals (its worker_init_fn): SIGTERM exits with status 0, SIGINT is ignored.

    SLURM and `kill -- -PGID` signal every process of the job at once, and Ctrl-C on a terminal signals the
    whole foreground group. A worker killed by SIGTERM made torch raise "DataLoader worker ... is killed by
    signal" in the main process, which then died without saving 'latest'; a worker that exits with status
    0 is no error to torch, and the main process, which stops at its next safe point, no longer waits for
    data once it has a stop signal. Ignoring SIGTERM instead would hang the main process at exit, where
    multiprocessing stops its workers with SIGTERM and waits for them. On SIGINT a worker keeps serving
    batches until the main process, at its next safe point, shuts the workers down.
    """
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_now(signum: int, frame: object) -> None:
    os._exit(0)  # at once: no queue flushing, which could block on a parent that no longer reads
