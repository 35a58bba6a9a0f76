"""What the CPU benchmark steps, and how: shared by bench_cpu.py (timings) and callgrind.py (profile).

For every scheduler case below and N float-LR parameter groups (SGD with momentum, one tiny
parameter per group, distinct base LRs) the same scheduler is built with torch's class
(``impl="torch"``) and with schedx's (``impl="schedx"``) on identically configured optimizers.
``impl="floor"`` is ``floor.c``: a C loop that reads each group's ``lr``, multiplies it and writes a
new float back, the least any compiled scheduler must do.

Hyperparameters are chosen so that the measured steps are the common case: schedules far from their
end (CosineAnnealingLR's ``T_max``, OneCycleLR's ``total_steps`` beyond every step taken, so it
never raises), decays on some steps but not most (StepLR, MultiStepLR, ReduceLROnPlateau), and LRs
that never reach subnormal numbers (bench_cpu.py checks after every measurement).

A *loop* is ``loop(k) -> ns``: k consecutive calls of one implementation's step, timed with
``time.perf_counter_ns`` around the whole loop, so that a round costs one pair of clock reads
however short a step is. The loop bodies are the plain calls a training loop makes
(``step()``, ``step(metric)``, ``scale(groups, factor)``); ``empty_loop`` is the same loop with no
call, whose cost the benchmark subtracts.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import itertools
import os
import shlex
import shutil
import subprocess
import sysconfig
import types
from pathlib import Path
from time import perf_counter_ns
from typing import Callable

import torch
import torch.optim.lr_scheduler as torch_lr
import torch.optim.swa_utils as torch_swa

import schedx

HERE = Path(__file__).resolve().parent
BUILD = HERE / ".build"

NS = (1, 10, 100, 1_000, 10_000)

# Every schedule stays representative (and LambdaLR's 0.95 ** e far from underflow) for this many
# steps; bench_cpu.py's plan stays within it.
MAX_STEPS = 12_000
assert 0.95**MAX_STEPS > 1e-300, "0.95 ** e reaches subnormal numbers near e = 13,800"

LONG = 100_000  # T_max / total_iters far beyond MAX_STEPS: the schedule never reaches its end

FLOOR_FACTOR = 0.9999  # floor.scale's multiplier: 0.9999 ** MAX_STEPS is still ~0.3

Loop = Callable[[int], int]


# --------------------------------------------------------------------------------------------
# The two implementations, and the optimizer both of them drive
# --------------------------------------------------------------------------------------------


def _implementation(lr_module, swalr, stack) -> types.SimpleNamespace:
    """``impl.StepLR`` ... for the 15 classes of ``lr_module``, and ``impl.SWALR``; ``impl.stack()``
    is the context in which a framework builds this implementation's schedulers."""
    classes = {name: getattr(lr_module, name) for name in torch_lr.__all__}
    return types.SimpleNamespace(**classes, SWALR=swalr, stack=stack)


IMPLS = {
    "torch": _implementation(torch_lr, torch_swa.SWALR, contextlib.nullcontext),
    "schedx": _implementation(schedx.lr_scheduler, schedx.SWALR, schedx.patched),
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


def _transformers_schedule(name: str, **kwargs):
    """transformers' ``get_scheduler(name)`` as its Trainer calls it: torch's LambdaLR, and for
    schedx the same call under ``schedx.patched()``, which makes it schedx's LambdaLR."""

    def build(S, opt):
        from transformers import get_scheduler  # a test extra: imported by these cases only

        with S.stack():
            return get_scheduler(
                name, opt, num_warmup_steps=5, num_training_steps=LONG, scheduler_specific_kwargs=kwargs
            )

    return build


# Schedulers a training stack builds, timed by bench_cpu.py only (callgrind.py profiles CASES: under
# valgrind, importing transformers alone would take longer than the profile).
STACK_CASES = {
    "HF-linear": _transformers_schedule("linear"),
    "HF-cosine": _transformers_schedule("cosine"),
    "HF-cosine_with_min_lr": _transformers_schedule("cosine_with_min_lr", min_lr_rate=0.1),
}
TIMED_CASES = {**CASES, **STACK_CASES}


def plateau_metrics(steps: int) -> list[float]:
    """A loss that improves by 1 for 15 steps, then stays flat for 5: with patience=4 (and an
    absolute threshold, 0.5), ReduceLROnPlateau reduces the LRs once every 20 steps."""
    return [-float(i // 20 * 15 + min(i % 20, 15)) for i in range(steps)]


# --------------------------------------------------------------------------------------------
# Loops: k consecutive steps of one implementation, timed as a whole
# --------------------------------------------------------------------------------------------


def _time_calls(step, k: int) -> int:
    repeat = itertools.repeat(None, k)
    start = perf_counter_ns()
    for _ in repeat:
        step()
    return perf_counter_ns() - start


def _time_calls_with_each(step, args: list) -> int:
    start = perf_counter_ns()
    for arg in args:
        step(arg)
    return perf_counter_ns() - start


def _time_floor(scale, groups: list, k: int) -> int:
    repeat, factor = itertools.repeat(None, k), FLOOR_FACTOR
    start = perf_counter_ns()
    for _ in repeat:
        scale(groups, factor)
    return perf_counter_ns() - start


def empty_loop(k: int) -> int:
    """The loops' own cost (iteration and clock reads), without a call."""
    repeat = itertools.repeat(None, k)
    start = perf_counter_ns()
    for _ in repeat:
        pass
    return perf_counter_ns() - start


def scheduler_loop(impl: str, case: str, n: int) -> tuple[Loop, torch.optim.Optimizer]:
    """A fresh optimizer with n groups, scheduler ``case`` of ``impl`` on it, and its loop."""
    optimizer = make_optimizer(n)
    scheduler = TIMED_CASES[case](IMPLS[impl], optimizer)
    optimizer.step()  # the usual order, and no "lr_scheduler.step() before optimizer.step()" warning
    if case == "ReduceLROnPlateau":
        metrics = iter(plateau_metrics(MAX_STEPS))
        step = scheduler.step

        def loop(k: int) -> int:
            args = list(itertools.islice(metrics, k))
            assert len(args) == k, f"more than MAX_STEPS = {MAX_STEPS:,} steps"
            return _time_calls_with_each(step, args)

        return loop, optimizer
    return functools.partial(_time_calls, scheduler.step), optimizer


def floor_loop(floor, n: int) -> tuple[Loop, torch.optim.Optimizer]:
    """A fresh optimizer with n groups, and the loop of ``floor.scale`` over its groups."""
    optimizer = make_optimizer(n)
    return functools.partial(_time_floor, floor.scale, optimizer.param_groups), optimizer


def schedx_fingerprint() -> str:
    """A short hash of the schedx that runs: its Python files and compiled modules. The timings and
    the profile of one report must come from the same build, and the engine can be rebuilt between
    the two (the tree is shared with people changing it)."""
    root = Path(schedx.__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("*.py"), *root.glob("*.so")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Small C modules (floor.c, callgrind_ctl.c), compiled with the system C compiler
# --------------------------------------------------------------------------------------------


def build_c_module(name: str, extra_flags: tuple[str, ...] = ()) -> types.ModuleType:
    """Compile ``benchmarks/<name>.c`` into ``benchmarks/.build/`` (when missing or older than the
    source) and import it. The build directory is git-ignored, so a fresh clone builds it here."""
    source = HERE / f"{name}.c"
    target = BUILD / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("gcc") or shutil.which("cc")]
        if compiler[0] is None:
            raise RuntimeError(f"no C compiler: set CC, or install gcc, to build {source}")
        BUILD.mkdir(exist_ok=True)
        include = sysconfig.get_paths()["include"]
        command = [*compiler, "-O3", "-shared", "-fPIC", f"-I{include}", *extra_flags]
        subprocess.run([*command, str(source), "-o", str(target)], check=True)
    spec = importlib.util.spec_from_file_location(name, target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
