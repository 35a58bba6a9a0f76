"""CPU benchmark: torch's ``scheduler.step()`` against schedx's, and against the physical floor.

For every scheduler case below and N in {1, 10, 100, 1,000, 10,000} float-LR parameter groups
(SGD with momentum, one tiny parameter per group, distinct base LRs), the same scheduler is built
on two identically configured optimizers, one with torch's class (``impl="torch"``) and one with
schedx's (``impl="schedx"``), and ``step()`` is timed in the same run. ``impl="floor"`` times
``floor.c``: a C loop that reads each group's ``lr``, multiplies it and writes a new float back,
the least any compiled scheduler must do.

Not part of the test suite (pytest collects ``tests/`` only, and this file does not match
``python_files``). Run it from the repository root -- ``make bench`` runs ``benchmarks/run.sh``:

    .venv/bin/python -m pytest benchmarks/bench_cpu.py -q -p no:randomly \\
        --benchmark-json=benchmarks/results/cpu.json
    .venv/bin/python benchmarks/report.py benchmarks/results/cpu.json

Each benchmark times ``rounds`` rounds of ``iterations`` consecutive ``step()`` calls on one scheduler
(plus untimed warm-up rounds); both scale with N (``PLAN``) so that the whole suite takes one to
two minutes on 2 cores. The report uses the median over rounds. Hyperparameters are chosen so that the
timed steps are the common case: schedules far from their end (CosineAnnealingLR's ``T_max``,
OneCycleLR's ``total_steps`` beyond every step taken here, so it never raises), decays on some
steps but not most (StepLR, MultiStepLR, ReduceLROnPlateau), and LRs that never reach subnormal
numbers (checked after every benchmark).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import pytest
import torch
import torch.optim.lr_scheduler as torch_lr
import torch.optim.swa_utils as torch_swa

import schedx

HERE = Path(__file__).resolve().parent

NS = (1, 10, 100, 1_000, 10_000)
# N -> (rounds, iterations per round, warm-up rounds). torch takes ~2 us + 0.3-1.4 us a group per
# step, so each benchmark spends up to ~3 s in torch's step() and far less in schedx's.
PLAN = {
    1: (1_000, 10, 10),
    10: (1_000, 10, 5),
    100: (1_000, 5, 4),
    1_000: (400, 2, 2),
    10_000: (150, 1, 3),
}


def planned_steps(n: int) -> int:
    """step() calls one benchmark makes: warm-up and timed rounds, and the one extra call
    pytest-benchmark makes after looped rounds to get a result."""
    rounds, iterations, warmup = PLAN[n]
    return (rounds + warmup) * iterations + 1


# Hyperparameters below keep every schedule representative (and LambdaLR's 0.95 ** e far from
# underflow) for at least this many steps.
MAX_STEPS = max(planned_steps(n) for n in PLAN)
assert MAX_STEPS <= 12_000, "0.95 ** e reaches subnormal numbers near e = 13,800"

LONG = 100_000  # T_max / total_iters far beyond MAX_STEPS: the schedule never reaches its end


# --------------------------------------------------------------------------------------------
# The two implementations, and the optimizer both of them drive
# --------------------------------------------------------------------------------------------


def _implementation(lr_module, swalr) -> types.SimpleNamespace:
    """``impl.StepLR`` ... for the 15 classes of ``lr_module``, and ``impl.SWALR``."""
    classes = {name: getattr(lr_module, name) for name in torch_lr.__all__}
    return types.SimpleNamespace(**classes, SWALR=swalr)


IMPLS = {
    "torch": _implementation(torch_lr, torch_swa.SWALR),
    "schedx": _implementation(schedx.lr_scheduler, schedx.SWALR),
}


def base_lrs(n: int) -> list[float]:
    """n distinct base LRs in [0.05, 0.1), most not exactly representable."""
    return [0.1 * (0.5 + i / (2 * n)) for i in range(n)]


def make_optimizer(n: int) -> torch.optim.SGD:
    """SGD with momentum and n parameter groups, each one tiny parameter with its own LR.

    ``Optimizer.add_param_group`` checks that a new group shares no parameter with any earlier one,
    which is quadratic (43 s for 10,000 groups here). Every parameter is a fresh tensor, so the
    check cannot fail: the groups after the first are completed with the optimizer's defaults, as
    add_param_group does, and appended directly. The result is the same list of dicts."""
    lrs = base_lrs(n)
    optimizer = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lrs[0]}], lr=0.1, momentum=0.9)
    for lr in lrs[1:]:
        group = {"params": [torch.zeros(1)], "lr": lr}
        for key, default in optimizer.defaults.items():
            group.setdefault(key, default)
        optimizer.param_groups.append(group)
    return optimizer


# --------------------------------------------------------------------------------------------
# The cases: the 15 classes of torch.optim.lr_scheduler, SWALR, and two composites people use
# --------------------------------------------------------------------------------------------


def _max_lrs(opt) -> list[float]:
    return [group["lr"] for group in opt.param_groups]


def _min_lrs(opt) -> list[float]:
    return [group["lr"] / 10 for group in opt.param_groups]


CASES = {
    "LambdaLR": lambda S, opt: S.LambdaLR(opt, lambda e: 0.95**e),
    "MultiplicativeLR": lambda S, opt: S.MultiplicativeLR(opt, lambda e: 0.95),
    # A decay every 10th step.
    "StepLR": lambda S, opt: S.StepLR(opt, step_size=10, gamma=0.9),
    # A milestone every 25th step, all the way.
    "MultiStepLR": lambda S, opt: S.MultiStepLR(
        opt, milestones=range(25, 2 * MAX_STEPS, 25), gamma=0.9
    ),
    # The usual short warm-up; then, like torch, it keeps stepping at factor 1.
    "ConstantLR": lambda S, opt: S.ConstantLR(opt, factor=0.5, total_iters=5),
    # Always inside the ramp.
    "LinearLR": lambda S, opt: S.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=LONG),
    "ExponentialLR": lambda S, opt: S.ExponentialLR(opt, gamma=0.999),
    "SequentialLR": lambda S, opt: S.SequentialLR(
        opt,
        [S.ConstantLR(opt, factor=0.1, total_iters=5), S.ExponentialLR(opt, gamma=0.999)],
        milestones=[5],
    ),
    "PolynomialLR": lambda S, opt: S.PolynomialLR(opt, total_iters=LONG, power=1.5),
    "CosineAnnealingLR": lambda S, opt: S.CosineAnnealingLR(opt, T_max=LONG, eta_min=1e-6),
    "ChainedScheduler": lambda S, opt: S.ChainedScheduler(
        [S.ExponentialLR(opt, gamma=0.999), S.CosineAnnealingLR(opt, T_max=LONG, eta_min=1e-6)]
    ),
    # One reduction every 20 steps (see plateau_metrics); the other steps only keep the books.
    "ReduceLROnPlateau": lambda S, opt: S.ReduceLROnPlateau(
        opt, factor=0.9, patience=4, threshold=0.5, threshold_mode="abs"
    ),
    # Writes momentum too.
    "CyclicLR": lambda S, opt: S.CyclicLR(
        opt,
        base_lr=_min_lrs(opt),
        max_lr=_max_lrs(opt),
        step_size_up=1_000,
        mode="triangular2",
        base_momentum=0.85,
        max_momentum=0.95,
    ),
    # Writes momentum too; total_steps beyond every step taken here, so it never raises.
    "OneCycleLR": lambda S, opt: S.OneCycleLR(opt, max_lr=_max_lrs(opt), total_steps=2 * MAX_STEPS),
    "CosineAnnealingWarmRestarts": lambda S, opt: S.CosineAnnealingWarmRestarts(
        opt, T_0=1_000, T_mult=2, eta_min=1e-6
    ),
    "SWALR": lambda S, opt: S.SWALR(opt, swa_lr=0.05, anneal_epochs=100, anneal_strategy="cos"),
    # Composites: linear warm-up then cosine; constant warm-up x exponential x cosine.
    "WarmupCosine": lambda S, opt: S.SequentialLR(
        opt,
        [
            S.LinearLR(opt, start_factor=0.01, total_iters=5),
            S.CosineAnnealingLR(opt, T_max=LONG, eta_min=1e-6),
        ],
        milestones=[5],
    ),
    "Chained3": lambda S, opt: S.ChainedScheduler(
        [
            S.ConstantLR(opt, factor=0.5, total_iters=5),
            S.ExponentialLR(opt, gamma=0.999),
            S.CosineAnnealingLR(opt, T_max=LONG, eta_min=1e-6),
        ]
    ),
}
assert len(CASES) == 18  # 15 classes + SWALR + 2 composites


def plateau_metrics(steps: int) -> list[float]:
    """A loss that improves by 1 for 15 steps, then stays flat for 5: with patience=4 (and an
    absolute threshold, 0.5), ReduceLROnPlateau reduces the LRs once every 20 steps."""
    return [-float(i // 20 * 15 + min(i % 20, 15)) for i in range(steps)]


def stepper(case: str, scheduler, steps: int):
    """The callable timed for one step: ``scheduler.step`` itself, or, for ReduceLROnPlateau,
    ``step(next metric)`` (the same small wrapper for both implementations)."""
    if case == "ReduceLROnPlateau":
        step, metrics = scheduler.step, iter(plateau_metrics(steps))
        return lambda: step(next(metrics))
    return scheduler.step


# --------------------------------------------------------------------------------------------
# The floor: benchmarks/floor.c, compiled here with the system C compiler
# --------------------------------------------------------------------------------------------


def build_floor():
    """Compile floor.c into benchmarks/.build/ (when missing or older than the source); import it."""
    source = HERE / "floor.c"
    target = HERE / ".build" / f"floor{sysconfig.get_config_var('EXT_SUFFIX')}"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("gcc") or shutil.which("cc")]
        if compiler[0] is None:
            raise RuntimeError("no C compiler: set CC, or install gcc, to build benchmarks/floor.c")
        target.parent.mkdir(exist_ok=True)
        include = sysconfig.get_paths()["include"]
        command = [*compiler, "-O3", "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)]
        subprocess.run(command, check=True)
    spec = importlib.util.spec_from_file_location("floor", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def floor():
    return build_floor()


# --------------------------------------------------------------------------------------------
# The benchmarks
# --------------------------------------------------------------------------------------------


def run(benchmark, target, optimizer, scheduler: str, impl: str, n: int) -> None:
    rounds, iterations, warmup = PLAN[n]
    benchmark.group = f"{scheduler} N={n}"
    benchmark.extra_info.update(scheduler=scheduler, impl=impl, n=n)
    benchmark.pedantic(target, rounds=rounds, iterations=iterations, warmup_rounds=warmup)
    # The steps timed were ordinary ones: no LR reached zero or a subnormal number.
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert min(lrs) >= sys.float_info.min, f"{scheduler}: an LR fell to {min(lrs)!r}"


# torch and schedx side by side for each case and N, so both run under the same conditions.
@pytest.mark.parametrize(
    "case, n, impl",
    [
        pytest.param(case, n, impl, id=f"{case}-N{n}-{impl}")
        for case in CASES
        for n in NS
        for impl in IMPLS
    ],
)
def test_step(benchmark, case, n, impl):
    optimizer = make_optimizer(n)
    scheduler = CASES[case](IMPLS[impl], optimizer)
    optimizer.step()  # the usual order, and no "lr_scheduler.step() before optimizer.step()" warning
    target = stepper(case, scheduler, planned_steps(n))
    run(benchmark, target, optimizer, case, impl, n)


@pytest.mark.parametrize("n", NS, ids=[f"N{n}" for n in NS])
def test_floor(benchmark, floor, n):
    optimizer = make_optimizer(n)
    target = functools.partial(floor.scale, optimizer.param_groups, 0.9999)
    run(benchmark, target, optimizer, "floor", "floor", n)
