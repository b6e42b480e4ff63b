"""slurm/train.sbatch against a running one-node SLURM (slurm/local_cluster.sh): requeue, time limit, one writer.

Each job trains 2 processes on the CPU (gloo) through the batch script as a user would submit it, with the site
values overridden on the sbatch command line (--gpus-per-node=0 --cpus-per-task=2).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import REPO_ROOT, assert_same_weights, build_tiny_dataset, loss_rows, mean_row, script_env, val_rows

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

LOCAL_CLUSTER = REPO_ROOT / "slurm" / "local_cluster.sh"
TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel", "srun")
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
TRAIN = ["--model", "IBCLN", "--vgg_weights", "random", "--ngf", "8", "--ndf", "8", "--load_size", "36",
         "--crop_size", "32", "--batch_size", "2", "--num_threads", "0", "--seed", "3", "--print_freq", "4",
         "--natural_prob", "0.5"]


class Cluster:
    """The running local cluster: submits the batch script, reads job states and output files."""

    def __init__(self, folder: Path, base: Path):
        self.folder = folder
        self.env = script_env(SLURM_CONF=str(folder / "slurm.conf"), PYTHON=sys.executable)
        self.data = build_tiny_dataset(base / "data", n_train=4, n_test=2, natural=2)
        self.checkpoints = base / "checkpoints"
        self.outputs = base / "jobs"
        self.outputs.mkdir()

    def run(self, *command: str) -> str:
        """Run a SLURM command against this cluster and return its stdout, asserting success."""
        proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{command}: {proc.stderr}"
        return proc.stdout

    def submit(self, name: str, *train_args: str, sbatch: tuple[str, ...] = ()) -> str:
        """sbatch slurm/train.sbatch for checkpoints/<name> (CPU, 2 processes); return the job id."""
        return self.run("sbatch", "--parsable", f"--job-name={name}", f"--output={self.outputs}/%x-%j.out",
                        "--gpus-per-node=0", "--cpus-per-task=2", *sbatch, str(REPO_ROOT / "slurm" / "train.sbatch"),
                        "--dataroot", str(self.data), "--checkpoints_dir", str(self.checkpoints), "--name", name,
                        *TRAIN, *train_args).strip()

    def job(self, job_id: str) -> dict[str, str]:
        """Return the job's fields as scontrol shows them (JobState, Reason, Restarts, ExitCode, JobName, ...)."""
        return dict(re.findall(r"(\w+)=(\S*)", self.run("scontrol", "-o", "show", "job", job_id)))

    def output(self, job_id: str) -> str:
        """Return the job's output file so far."""
        name = self.job(job_id)["JobName"]
        path = self.outputs / f"{name}-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, what: str, ready: Callable[[], bool], job_id: str, timeout: float = 240,
                 while_running: bool = True) -> None:
        """Wait until ready() is true, failing with the job's state and output after timeout seconds, or at once
        when the job has ended (while_running)."""
        deadline = time.monotonic() + timeout
        while not ready():
            job = self.job(job_id)
            if time.monotonic() > deadline or (while_running and job["JobState"] in ENDED):
                pytest.fail(f"{what}: not within {timeout} s; job {job}\n{self.output(job_id)[-4000:]}")
            time.sleep(0.2)

    def wait_for_state(self, job_id: str, *states: str, timeout: float = 240) -> dict[str, str]:
        """Wait until the job is in one of states; return its fields."""
        self.wait_for(f"job {job_id} {'/'.join(states)}", lambda: self.job(job_id)["JobState"] in states, job_id,
                      timeout, while_running=False)
        return self.job(job_id)

    def release(self, job_id: str, *updates: str) -> None:
        """Start a requeued job now instead of after its BeginTime (SLURM waits about 2 minutes)."""
        self.wait_for_state(job_id, "PENDING")
        # slurmd refuses a job started in the second its earlier run's credential was revoked ("Job credential
        # revoked": the job ends FAILED), the reason for SLURM's own wait: let that second pass.
        time.sleep(2)
        self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now", *updates)


def cluster_processes(folder: Path) -> list[str]:
    """Return 'pid command' of each running process that belongs to the cluster in folder or to one of its jobs."""
    marks = {f"IBCLN_LOCAL_SLURM={folder}".encode(), f"SLURM_CONF={folder / 'slurm.conf'}".encode()}
    found = []
    for proc in Path("/proc").iterdir():
        try:
            environ = set((proc / "environ").read_bytes().split(b"\0"))
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marks & environ and state != "Z":
            found.append(f"{proc.name} {command}")
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Start the local cluster (skip, saying why, where it cannot run), stop it after, with nothing left running."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} not found): apt-get install slurm-wlm munge "
                    "(.ci/run does, as root)")
    folder = Path(tempfile.mkdtemp(prefix="ibcln-slurm-"))  # short: munge's socket path has a length limit
    try:
        start = subprocess.run(["bash", str(LOCAL_CLUSTER), "start", str(folder)], capture_output=True, text=True,
                               timeout=180)
        if start.returncode != 0:
            subprocess.run(["bash", str(LOCAL_CLUSTER), "stop", str(folder)], capture_output=True, timeout=180)
            pytest.skip(f"the local SLURM cluster cannot start here: {start.stderr.strip()[-1500:]}")
        runs = Cluster(folder, tmp_path_factory.mktemp("slurm_runs"))
        yield runs
        stop = subprocess.run(["bash", str(LOCAL_CLUSTER), "stop", str(folder)], capture_output=True, text=True,
                              timeout=180)
        for log in folder.glob("*.log"):  # the daemons' logs stay with the jobs' output, for a failure's story
            shutil.copy(log, runs.outputs)
        assert stop.returncode == 0 and "still running" not in stop.stderr, stop.stderr
        assert not cluster_processes(folder), cluster_processes(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def lines(text: str, prefix: str) -> list[str]:
    """Return the lines of text that start with prefix."""
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_a_job_requeued_mid_epoch_resumes_by_itself_exactly(cluster):
    run = ["--dataset_size", "48", "--niter", "1", "--niter_decay", "1", "--save_latest_freq", "8",
           "--save_epoch_freq", "1", "--val_dataroot", str(cluster.data)]
    whole = cluster.submit("whole", *run)
    job = cluster.submit("requeued", *run)
    cluster.wait_for("training under way", lambda: "(epoch: 1, iters: 4," in cluster.output(job), job)
    cluster.run("scontrol", "requeue", job)  # as preemption does: SIGTERM to every process of the job
    cluster.release(job)
    assert cluster.wait_for_state(job, "COMPLETED", "FAILED")["JobState"] == "COMPLETED", cluster.output(job)
    assert cluster.wait_for_state(whole, "COMPLETED", "FAILED")["JobState"] == "COMPLETED", cluster.output(whole)
    out = cluster.output(job)
    assert cluster.job(job)["Restarts"] == "1"
    saved = re.search(r"^terminated \(SIGTERM\): saving 'latest' \(--continue_train resumes at sample (\d+) of "
                      r"epoch (\d+)\)$", out, flags=re.MULTILINE)
    assert saved and 0 < int(saved[1]) < 24 and saved[2] == "1", out[-4000:]  # in the middle of epoch 1
    assert f"resuming at sample {saved[1]} of epoch 1 ({saved[1]} samples seen)" in out
    assert lines(out, "--continue_train auto: ") == [
        f"--continue_train auto: no training state in {cluster.checkpoints / 'requeued'}: a new run",
        "--continue_train auto: resuming from 'latest'"]
    assert len(lines(out, "[train.sbatch")) == 5 and out.rstrip().endswith("training finished")
    assert_same_weights(cluster.checkpoints / "whole", cluster.checkpoints / "requeued")
    rows = loss_rows(cluster.checkpoints / "requeued")
    steps = [re.match(r"\(epoch: (\d+), iters: (\d+),", row).groups() for row in rows]
    assert len(steps) == len(set(steps)) == 12  # 2 x 24 samples per process, a line every 4: none twice
    assert rows == loss_rows(cluster.checkpoints / "whole")
    assert val_rows(cluster.checkpoints / "requeued") == val_rows(cluster.checkpoints / "whole")
    assert not list((cluster.checkpoints / "requeued").glob("train.lock*"))


def test_a_job_at_its_time_limit_saves_and_requeues_itself_and_a_second_job_is_refused(cluster):
    # --signal=B:USR1@150: SLURM signals the batch script 150 s before the time limit, checking every 30 s or so.
    # The limit is lowered to 3 minutes once training is under way, so the signal comes within about 30 s.
    job = cluster.submit("timed", "--dataset_size", "24", "--niter", "1000", "--save_latest_freq", "100000",
                         sbatch=("--time=10", "--signal=B:USR1@150"))
    cluster.wait_for("training under way", lambda: "(epoch: 1, iters: 4," in cluster.output(job), job)
    cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=3")
    cluster.wait_for("the job requeueing itself", lambda: cluster.job(job)["Restarts"] == "1", job, timeout=120)
    out = cluster.output(job)
    assert "the time limit is near: asking the training to save 'latest' and stop" in out
    saved = re.search(r"^terminated \(SIGTERM\): saving 'latest' \(--continue_train resumes at sample (\d+) of "
                      r"epoch (\d+)\)$", out, flags=re.MULTILINE)
    assert saved, out[-4000:]
    assert f"training stopped for the time limit (exit status 1): requeueing job {job}" in out
    cluster.release(job, "TimeLimit=10")  # the restarted job is far from its limit again
    where = f"at sample {saved[1]} of epoch {saved[2]}" if saved[1] != "0" else f"after epoch {int(saved[2]) - 1}"
    cluster.wait_for("the restarted job resuming", lambda: f"resuming {where}" in cluster.output(job), job)
    cluster.wait_for("training under way again", lambda: cluster.output(job).count("(epoch: ") > out.count("(epoch: "),
                     job)

    second = cluster.submit("timed", "--dataset_size", "24", "--niter", "1")
    assert cluster.wait_for_state(second, "COMPLETED", "FAILED")["JobState"] == "FAILED"
    errors = lines(cluster.output(second), "error: ")
    assert len(errors) == 1, cluster.output(second)
    assert "is in use by another training run (pid " in errors[0] and f"SLURM job {job}, since" in errors[0]
    assert "requeueing" not in cluster.output(second) and cluster.job(second)["Restarts"] == "0"

    cluster.run("scancel", job)  # SIGTERM: the training saves and the job ends, not to come back
    assert cluster.wait_for_state(job, "CANCELLED", "COMPLETED", "FAILED")["JobState"] == "CANCELLED"
    out = cluster.output(job)
    assert out.count("terminated (SIGTERM): saving 'latest'") == 2 and out.count("requeueing job") == 1
    assert not (cluster.checkpoints / "timed" / "train.lock").exists()


def test_the_test_and_evaluate_scripts_run_a_checkpoint(cluster, seeded_weights):
    common = ["--name", seeded_weights.name, "--checkpoints_dir", str(seeded_weights.parent), "--epoch", "final",
              "--ngf", "8", "--results_dir", str(cluster.outputs / "results")]
    jobs = {script: cluster.run("sbatch", "--parsable", f"--job-name={script}", "--gpus-per-node=0",
                                "--cpus-per-task=1", f"--output={cluster.outputs}/%x-%j.out",
                                str(REPO_ROOT / "slurm" / f"{script}.sbatch"), *args, *common).strip()
            for script, args in (("test", ["--dataroot", str(cluster.data)]),
                                 ("evaluate", ["--sets", f"tiny={cluster.data}", "--json",
                                               str(cluster.outputs / "eval.json")]))}
    for script, job in jobs.items():
        assert cluster.wait_for_state(job, *ENDED)["JobState"] == "COMPLETED", cluster.output(job)
        out = cluster.output(job)
        assert f"[{script}.sbatch" in out and f"{script}.py ended with exit status 0" in out
    mean = mean_row(cluster.outputs / "results" / seeded_weights.name / "test_final" / "metrics.csv")
    report = json.loads((cluster.outputs / "eval.json").read_text())
    assert report["tiny"]["images"] == 2
    assert report["tiny"]["psnr"]["T_3"] == pytest.approx(mean["PSNR_T_3"], abs=0.01)
