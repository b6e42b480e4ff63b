"""Stops at safe points (util/signals.py): signals set a flag, a wait for data ends at once, workers stay quiet."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest

from util import signals


def test_sigterm_and_sigint_only_record_a_stop_and_the_first_one_decides():
    before = {signum: signal.getsignal(signum) for signum in signals.EXIT_CODES}
    with signals.stop_at_safe_points():
        assert signals.stop_code() == 0
        os.kill(os.getpid(), signal.SIGTERM)  # raised nothing: we are still here
        time.sleep(0.01)
        assert signals.stop_code() == 143
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert signals.stop_code() == 143
    assert {signum: signal.getsignal(signum) for signum in signals.EXIT_CODES} == before
    with signals.stop_at_safe_points():
        assert signals.stop_code() == 0  # a new stretch starts without a stop
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert signals.stop_code() == 130


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job started with &
    try:
        with signals.stop_at_safe_points():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            assert signals.stop_code() == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_wait_for_data_ends_at_once_on_a_stop_signal():
    with signals.stop_at_safe_points():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        start = time.time()
        with pytest.raises(signals.StopWaiting):
            with signals.interruptible():
                time.sleep(30)  # a DataLoader that never delivers
        assert time.time() - start < 10 and signals.stop_code() == 143
        with pytest.raises(signals.StopWaiting):  # a stop already received: no new wait begins
            with signals.interruptible():
                pytest.fail("waited after a stop")


def test_a_signal_outside_a_wait_does_not_interrupt_the_work():
    with signals.stop_at_safe_points():
        with signals.interruptible():
            pass
        steps = []
        for step in range(3):  # an optimiser step in which the signal lands
            if step == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
            steps.append(step)
        assert steps == [0, 1, 2] and signals.stop_code() == 143


def _worker(ready) -> None:
    signals.data_worker_signals(0)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C on the terminal reaches the workers too: ignored
    ready.set()
    time.sleep(60)


@pytest.mark.slow
def test_a_data_worker_ignores_sigint_and_exits_with_status_0_on_sigterm():
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    worker = context.Process(target=_worker, args=(ready,))
    worker.start()
    assert ready.wait(30)
    time.sleep(0.1)
    assert worker.is_alive()
    os.kill(worker.pid, signal.SIGTERM)
    worker.join(30)
    assert worker.exitcode == 0
