"""schedx's step() leaks nothing: 1,000,000 steps at 100 parameter groups, per scheduler.

After a warm-up of 10,000 steps, a further 1,000,000 ``step()`` calls must leave flat:

* the resident set size (``/proc/self/statm``): it grows by less than 1 MiB;
* ``sys.getrefcount`` of every param-group dict, and of every float that stays in a group
  (``initial_lr``, ``weight_decay``, a momentum the schedule does not rewrite...) or in the
  scheduler's ``base_lrs``: a reference leaked per step would add 1,000,000;
* ``len(gc.get_objects())``, after ``gc.collect()``.

The engine reads and writes those dicts and floats through the raw CPython API on every step, so
a missing ``Py_DECREF`` shows up here long before it shows up in training.

Every class is covered: the 15 of torch.optim.lr_scheduler (SequentialLR as linear warm-up then
cosine, ChainedScheduler with two children) and SWALR, plus a ChainedScheduler of three, with
hyperparameters that keep the schedule live for all 1,000,000 steps (OneCycleLR's ``total_steps``
beyond them, factors close to 1 so that LRs stay normal numbers). A run takes 3-30 s per scheduler on
2 cores, so the default run (``make test``) covers one scheduler per engine entry point:

* CosineAnnealingLR   (recursive_step)
* MultiplicativeLR    (scale_by_factors, with a Python lambda per group)
* CyclicLR            (cyclic_get_lr, momentum included)
* OneCycleLR          (one_cycle_get_lr, momentum included)
* SWALR               (swa_get_lr)
* ReduceLROnPlateau   (plateau_get_lr)
* ChainedScheduler    (two children, and collect_lrs for its ``_last_lr``)

The other ten cases are marked ``slow``; run the full matrix with

    .venv/bin/python -m pytest tests/test_memory.py -m 'slow or not slow'
"""
from __future__ import annotations

import gc
import math
import os
import sys

import pytest

from twins import SCHEDX, Fn, Sched, default_lrs, make_optimizer

STEPS = 1_000_000
WARMUP = 10_000
GROUPS = 100
RSS_GROWTH_LIMIT = 1 << 20  # bytes
REFCOUNT_TOLERANCE = 2
GC_OBJECTS_TOLERANCE = 20

SPECS = {
    "LambdaLR": Sched("LambdaLR", lr_lambda=Fn("exp", 0.999999)),
    "MultiplicativeLR": Sched("MultiplicativeLR", lr_lambda=Fn("const", 0.999999)),
    "StepLR": Sched("StepLR", step_size=1_000, gamma=0.99),
    "MultiStepLR": Sched("MultiStepLR", milestones=[100_000, 300_000, 600_000], gamma=0.5),
    "ConstantLR": Sched("ConstantLR", factor=0.5, total_iters=1_000),
    "LinearLR": Sched("LinearLR", start_factor=0.1, total_iters=500_000),
    "ExponentialLR": Sched("ExponentialLR", gamma=0.999999),
    "SequentialLR": Sched(
        "SequentialLR",
        children=[
            Sched("LinearLR", start_factor=0.01, total_iters=1_000),
            Sched("CosineAnnealingLR", T_max=2 * STEPS, eta_min=1e-6),
        ],
        milestones=[1_000],
    ),
    "PolynomialLR": Sched("PolynomialLR", total_iters=2 * STEPS, power=1.5),
    "CosineAnnealingLR": Sched("CosineAnnealingLR", T_max=10_000, eta_min=1e-4),
    "ChainedScheduler": Sched(
        "ChainedScheduler",
        children=[
            Sched("ExponentialLR", gamma=0.999999),
            Sched("CosineAnnealingLR", T_max=10_000, eta_min=1e-4),
        ],
    ),
    # A reduction every 20 steps, each one larger than eps for all 1,000,000 steps.
    "ReduceLROnPlateau": Sched(
        "ReduceLROnPlateau", factor=0.9999, patience=4, threshold=0.5, threshold_mode="abs"
    ),
    "CyclicLR": Sched(
        "CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=1_000, base_momentum=0.85,
        max_momentum=0.95,
    ),
    "OneCycleLR": Sched("OneCycleLR", max_lr=0.1, total_steps=STEPS + WARMUP + 1_000),
    "CosineAnnealingWarmRestarts": Sched(
        "CosineAnnealingWarmRestarts", T_0=1_000, T_mult=2, eta_min=1e-6
    ),
    "SWALR": Sched("SWALR", swa_lr=0.05, anneal_epochs=1_000, anneal_strategy="cos"),
    # Composites people use.
    "Chained3": Sched(
        "ChainedScheduler",
        children=[
            Sched("ConstantLR", factor=0.5, total_iters=1_000),
            Sched("ExponentialLR", gamma=0.999999),
            Sched("CosineAnnealingLR", T_max=10_000, eta_min=1e-4),
        ],
    ),
}
DEFAULT_RUN = {
    "CosineAnnealingLR",
    "MultiplicativeLR",
    "CyclicLR",
    "OneCycleLR",
    "SWALR",
    "ReduceLROnPlateau",
    "ChainedScheduler",
}
assert DEFAULT_RUN <= set(SPECS)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def plateau_metric(i: int) -> float:
    """Improves by 1 for 15 steps, then flat for 5: with patience=4 and an absolute threshold of
    0.5, one reduction every 20 steps."""
    return -float(i // 20 * 15 + min(i % 20, 15))


def drive(scheduler, takes_metric: bool, start: int, count: int) -> None:
    step = scheduler.step
    if takes_metric:
        for i in range(start, start + count):
            step(plateau_metric(i))
    else:
        for _ in range(count):
            step()


def held_objects(optimizer, scheduler) -> list[tuple[str, object]]:
    """The group dicts, and the floats in the groups and in ``base_lrs``, labelled."""
    held = [(f"param_groups[{i}]", g) for i, g in enumerate(optimizer.param_groups)]
    for i, g in enumerate(optimizer.param_groups):
        held += [(f"param_groups[{i}][{k!r}]", v) for k, v in g.items() if type(v) is float]
    held += [(f"base_lrs[{i}]", v) for i, v in enumerate(getattr(scheduler, "base_lrs", ()))]
    return held


def still_held(optimizer, scheduler) -> set[int]:
    """ids of the objects that are still in place: rewritten values (lr, momentum) are not."""
    return {id(obj) for _, obj in held_objects(optimizer, scheduler)}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n in DEFAULT_RUN else pytest.mark.slow) for n in SPECS],
)
def test_million_steps_leak_nothing(name):
    spec = SPECS[name]
    optimizer = make_optimizer("sgd", default_lrs(GROUPS))
    scheduler = spec.build(SCHEDX, optimizer)
    optimizer.step()
    takes_metric = spec.takes_metric

    drive(scheduler, takes_metric, 0, WARMUP)
    held = held_objects(optimizer, scheduler)
    assert any(label.endswith("['initial_lr']") for label, _ in held) or name == "ReduceLROnPlateau"
    gc.collect()
    refcounts = [sys.getrefcount(obj) for _, obj in held]
    objects = len(gc.get_objects())
    rss = rss_bytes()

    drive(scheduler, takes_metric, WARMUP, STEPS)

    gc.collect()
    rss_growth = rss_bytes() - rss
    objects_growth = len(gc.get_objects()) - objects
    in_place = still_held(optimizer, scheduler)
    refcount_growth = {
        label: sys.getrefcount(obj) - before
        for (label, obj), before in zip(held, refcounts)
        if id(obj) in in_place
    }
    assert refcount_growth, "no group dict or float stayed in place to check"
    leaking = {label: d for label, d in refcount_growth.items() if abs(d) > REFCOUNT_TOLERANCE}

    assert rss_growth < RSS_GROWTH_LIMIT, f"{name}: RSS grew by {rss_growth / 1024:.0f} KiB"
    assert not leaking, f"{name}: reference counts changed over {STEPS:,} steps: {leaking}"
    assert abs(objects_growth) <= GC_OBJECTS_TOLERANCE, (
        f"{name}: gc.get_objects() grew by {objects_growth} over {STEPS:,} steps"
    )
    # The schedule stayed live: every group still has a positive, finite float LR.
    assert all(type(g["lr"]) is float and 0.0 < g["lr"] < math.inf for g in optimizer.param_groups)


TENSOR_MODE_CASES = ["CosineAnnealingLR", "ChainedScheduler", "ReduceLROnPlateau"]


@pytest.mark.parametrize("name", TENSOR_MODE_CASES)
def test_million_tensor_mode_steps_leak_nothing(name):
    """The same with float64 CPU tensor LRs, where each step is one run of a program
    (schedx/_tensor_mode.py): the LR tensors, the groups and the program's arrays stay put."""
    import torch

    spec = SPECS[name]
    optimizer = make_optimizer("sgd", default_lrs(GROUPS))
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(group["lr"], dtype=torch.float64)
    scheduler = spec.build(SCHEDX, optimizer)
    metric = torch.zeros((), dtype=torch.float64)
    step = scheduler.step

    def drive_tensor(start, count):
        if spec.takes_metric:
            for i in range(start, start + count):
                metric.fill_(plateau_metric(i))
                step(metric)
        else:
            for _ in range(count):
                step()

    drive_tensor(0, WARMUP)
    assert "_tensor_program" in scheduler.__dict__
    held = [g["lr"] for g in optimizer.param_groups] + list(optimizer.param_groups)
    gc.collect()
    refcounts = [sys.getrefcount(obj) for obj in held]
    objects = len(gc.get_objects())
    rss = rss_bytes()

    drive_tensor(WARMUP, STEPS)

    gc.collect()
    assert rss_bytes() - rss < RSS_GROWTH_LIMIT
    assert [sys.getrefcount(obj) for obj in held] == refcounts
    assert abs(len(gc.get_objects()) - objects) <= GC_OBJECTS_TOLERANCE
    assert all(0.0 < float(g["lr"]) < math.inf for g in optimizer.param_groups)
