"""Schedulers of separate optimizers stepped from several threads at once give what stepping them one
after another gives (the engine keeps no state between calls; per-call buffers only)."""
from __future__ import annotations

import threading

import pytest

from tensor_cases import CASES, SCHEDX, STEPS, lrs_of, make_optimizer, step

THREADS = len(CASES)


def _run(case, lr_kind: str, barrier: threading.Barrier | None, out: dict, key: int) -> None:
    opt = make_optimizer(lr_kind)
    sched = case.build(SCHEDX, opt)
    if barrier is not None:
        barrier.wait()
    trajectory = []
    for i in range(STEPS):
        step(case, sched, i)
        trajectory.append(lrs_of(opt))
    out[key] = trajectory


@pytest.mark.parametrize("lr_kind", ["float", "tensor"])
def test_threads_stepping_separate_schedulers_match_sequential_runs(lr_kind):
    cases = [CASES[k % len(CASES)] for k in range(THREADS)]
    sequential: dict = {}
    for k, case in enumerate(cases):
        _run(case, lr_kind, None, sequential, k)
    concurrent: dict = {}
    barrier = threading.Barrier(THREADS)
    threads = [
        threading.Thread(target=_run, args=(case, lr_kind, barrier, concurrent, k))
        for k, case in enumerate(cases)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert concurrent == sequential
