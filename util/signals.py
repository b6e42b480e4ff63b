"""SIGTERM handling, in one place: the training process stops like on Ctrl-C, DataLoader workers exit quietly."""

from __future__ import annotations

import os
import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM (SLURM preemption, docker stop, kill) received: handled like Ctrl-C, exit code 143."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def install_sigterm_handler() -> None:
    """Make SIGTERM raise Terminated in the main thread, so that training saves 'latest' as on Ctrl-C."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def ignore_sigterm() -> None:
    """Ignore further SIGTERMs (while 'latest' is being saved after a stop)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def exit_on_sigterm(worker_id: int) -> None:
    """Make SIGTERM end a DataLoader worker with exit status 0 (its worker_init_fn); return None.

    SLURM and `kill -- -PGID` signal every process of the job at once. A worker killed by SIGTERM made torch
    raise "DataLoader worker ... is killed by signal" in the main process, which then died without saving
    'latest'. A worker that exits with status 0 is not an error to torch, so the main process handles its own
    SIGTERM (saves 'latest', exits 143). Ignoring SIGTERM instead would hang the main process at exit, where
    multiprocessing stops its workers with SIGTERM and waits for them.
    """
    signal.signal(signal.SIGTERM, _exit_now)


def _exit_now(signum: int, frame: object) -> None:
    os._exit(0)  # at once: no queue flushing, which could block on a parent that no longer reads
