"""CPU time read from /proc: the whole process tree, and the main thread alone."""

from __future__ import annotations

import os
import threading
import time

from loadtest.process import cpu_seconds, main_thread_cpu_seconds


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_main_threads_cpu_counts_its_own_work_and_not_another_threads() -> None:
    pid = os.getpid()
    main_before, all_before = main_thread_cpu_seconds(pid), cpu_seconds(pid)
    worker = threading.Thread(target=_burn, args=(0.5,))
    worker.start()
    worker.join()
    main_after_worker, all_after_worker = main_thread_cpu_seconds(pid), cpu_seconds(pid)
    _burn(0.5)
    main_after_own = main_thread_cpu_seconds(pid)
    assert all_after_worker - all_before >= 0.4  # the worker's time is the process's
    assert main_after_worker - main_before < 0.2  # and not the main thread's
    assert main_after_own - main_after_worker >= 0.4
