"""Schedule curves before training: every step's LR (and momentum, for the cycling schedules) of a
scheduler written as ``"OneCycleLR(max_lr=0.1, total_steps=1000)"``, or of a custom schedule written
as a call of schedx.schedules' functions, ``"warmup(500, cosine(steps=9500, end=0.01))"``, computed by
the engine.

The curve comes from the scheduler itself, not from a formula written again: a throwaway SGD
optimizer with one parameter group (momentum 0.9) gets the scheduler, its LR (and momentum) become
float64 tensors so the scheduler enters tensor mode (schedx/_tensor_mode.py), and the program then
records all the remaining steps in one engine call. Values are the float path's, bit for bit. A custom
schedule's curve is its compiled program run over every step in one engine call: the LRs ScheduleLR
writes.

A curve exists only where the scheduler steps: where torch's scheduler raises at step k (StepLR with
step_size=0 at step 1, OneCycleLR past total_steps), there is no curve, and the ValueError says at
which step and what torch raises. A curve has at most MAX_STEPS steps, so that its cost is bounded.
"""
from __future__ import annotations

import ast
import dataclasses
import io
import math
import warnings

import torch

from . import _C, lr_scheduler, schedules, swa_utils

# Schedulers a curve can be drawn for from keyword arguments alone (the others need callables, child
# schedulers or metrics).
PLOTTABLE = {
    name: getattr(lr_scheduler, name)
    for name in (
        "StepLR",
        "MultiStepLR",
        "ConstantLR",
        "LinearLR",
        "ExponentialLR",
        "PolynomialLR",
        "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts",
        "CyclicLR",
        "OneCycleLR",
    )
} | {"SWALR": swa_utils.SWALR}

# Custom schedules by name: the functions of schedx.schedules that build one from numbers (and from
# other schedules, written as nested calls).
CUSTOM = {
    name: getattr(schedules, name)
    for name in schedules.__all__
    if name not in ("Schedule", "TraceError", "trace", "step", "base_lr", "where", "minimum", "maximum",
                    "cos", "sin", "exp", "log", "sqrt")
}

MOMENTUM = 0.9
# A curve's length at most: a few hundred MB of Python floats, seconds of drawing.
MAX_STEPS = 10_000_000
_STEPS_BY_HAND = 2  # before a scheduler's tensor-mode program records the rest of its curve


@dataclasses.dataclass
class Curve:
    label: str
    lrs: list[float]
    momenta: list[float] | None  # for schedules that cycle momentum


def parse_schedule(text: str) -> tuple[str, dict]:
    """``"Name(key=value, ...)"`` (or a bare ``"Name"``) as the name and its keyword arguments, whose
    values are Python literals. ValueError, saying what is wrong, for anything else."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"cannot read schedule {text!r}: {error.msg}") from None
    if isinstance(node, ast.Name):
        return node.id, {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in PLOTTABLE:
        raise ValueError(f"unknown schedule {node.func.id!r}; known: {known_names()}")
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.args:
        raise ValueError(
            f"cannot read schedule {text!r}: write it as Name(key=value, ...), e.g. "
            "'CosineAnnealingLR(T_max=1000)'"
        )
    _check_keywords(node, text)
    kwargs = {}
    for keyword in node.keywords:
        try:
            kwargs[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            raise ValueError(
                f"cannot read schedule {text!r}: the value of {keyword.arg} is not a literal"
            ) from None
    return node.func.id, kwargs


def _check_keywords(call: ast.Call, text: str) -> None:
    """ValueError for `**` or a keyword given twice (which ast.parse lets through; compile refuses it)."""
    names = [k.arg for k in call.keywords]
    if None in names:
        raise ValueError(f"cannot read schedule {text!r}: ** is not supported")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"cannot read schedule {text!r}: keyword argument repeated: {repeated[0]}")


def known_names() -> str:
    return ", ".join([*sorted(PLOTTABLE), *sorted(CUSTOM)])


def custom_schedule(text: str) -> schedules.Schedule | None:
    """The custom schedule `text` writes as a call of schedx.schedules' functions (positional and
    keyword arguments: literals or nested calls), or None when `text` names no such function."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CUSTOM):
        return None
    return _evaluate_call(node, text)


def _evaluate_call(node: ast.expr, text: str):
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        function = CUSTOM.get(node.func.id)
        if function is None:
            raise ValueError(f"cannot read {text!r}: unknown schedule {node.func.id!r}; known: {known_names()}")
        _check_keywords(node, text)
        args = [_evaluate_call(a, text) for a in node.args]
        kwargs = {k.arg: _evaluate_call(k.value, text) for k in node.keywords}
        try:
            return function(*args, **kwargs)
        except Exception as error:
            raise ValueError(f"{node.func.id}: {_describe(error)}") from None
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_evaluate_call(e, text) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"cannot read schedule {text!r}: {ast.unparse(node)} is not a literal") from None


def custom_curve(text: str, schedule: schedules.Schedule, steps: int, lr: float) -> Curve:
    """The LRs ScheduleLR writes for one group whose initial LR is `lr`, at steps 0 … steps-1, in one
    engine call; from a step the engine cannot compute on (an int past 2**53), in Python, as ScheduleLR
    does. ValueError, and no curve, where the schedule raises."""
    lrs = torch.empty(steps, dtype=torch.float64)
    done = _C.record_schedule(schedule._program(), steps, float(lr), lrs.data_ptr())
    values = lrs[:done].tolist()
    for step in range(done, steps):
        try:
            values.append(float(schedule.lr(step, lr)))
        except Exception as error:
            raise ValueError(f"{text}: fails at step {step}: {type(error).__name__}: {error}; no curve") from None
    return Curve(text, values, None)


def build(text: str, lr: float) -> tuple[lr_scheduler.LRScheduler, torch.optim.Optimizer]:
    """The scheduler `text` describes, on a fresh one-group SGD optimizer whose LR is `lr`."""
    name, kwargs = parse_schedule(text)
    cls = PLOTTABLE.get(name)
    if cls is None:
        raise ValueError(f"unknown schedule {name!r}; known: {known_names()}")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=MOMENTUM)
    try:
        return cls(optimizer, **kwargs), optimizer
    except Exception as error:  # torch raises ZeroDivisionError too (CyclicLR(step_size_up=0))
        raise ValueError(f"{name}: {_describe(error)}") from None


def _describe(error: Exception) -> str:
    """An exception in one line: its message, after its type unless it is a TypeError or ValueError
    (whose messages say what is wrong by themselves)."""
    if type(error) in (TypeError, ValueError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _cycles_momentum(scheduler) -> bool:
    return bool(getattr(scheduler, "cycle_momentum", False))


def check_steps(steps: int) -> None:
    """TypeError unless `steps` is an int; ValueError unless 1 <= steps <= MAX_STEPS."""
    if type(steps) is bool or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be from 1 to {MAX_STEPS:,}, got {steps:,}")


def check_lr(lr: float) -> None:
    """TypeError unless `lr` is a real number; ValueError unless it is finite and not negative."""
    if type(lr) is bool or not isinstance(lr, (int, float)):
        raise TypeError(f"lr must be a number, got {type(lr).__name__}")
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be a finite number >= 0, got {lr}")


def curve(text: str, steps: int, lr: float = 0.1) -> Curve:
    """The LR (and momentum) at steps 0 … steps-1 of the scheduler or custom schedule `text`, for a
    base LR `lr`. ValueError for a schedule that cannot be read or built, or that raises at one of
    these steps (there is no curve then)."""
    if not isinstance(text, str):
        raise TypeError(f"a schedule is written as a str, got {type(text).__name__}")
    check_steps(steps)
    check_lr(lr)
    custom = custom_schedule(text)
    if custom is not None:
        return custom_curve(text, custom, steps, lr)
    with warnings.catch_warnings():
        # A curve steps the scheduler with no optimizer step: torch's warning about that order is
        # about training loops.
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        scheduler, optimizer = build(text, lr)
        try:
            result = _scheduler_curve(text, scheduler, optimizer, steps)
        except Exception:
            failure = _first_failure(text, steps, lr)
            if failure is None:  # the float path steps where the recording failed: not torch's error
                raise
        else:
            # On tensor LRs, an error in the steps made one by one may surface only at a later step
            # (there is none in a short curve): they are checked on float LRs.
            failure = _first_failure(text, min(steps, _STEPS_BY_HAND + 1), lr)
            if failure is None:
                return result
        step, error = failure
        raise ValueError(f"{text}: torch's scheduler raises at step {step}: {type(error).__name__}: {error}; no curve")


def _first_failure(text: str, steps: int, lr: float) -> tuple[int, Exception] | None:
    """The first of steps 1 … steps-1 at which the scheduler, stepped on float LRs (torch's exceptions
    at torch's steps), raises, with what it raises; None when every step succeeds."""
    scheduler, _ = build(text, lr)
    for step in range(1, steps):
        try:
            scheduler.step()
        except Exception as error:
            return step, error
    return None


def _scheduler_curve(text: str, scheduler, optimizer, steps: int) -> Curve:
    group = optimizer.param_groups[0]
    with_momentum = _cycles_momentum(scheduler)
    # float64 tensors: the scheduler moves to tensor mode, whose program can record many steps at once.
    group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float64)
    if with_momentum:
        group["momentum"] = torch.tensor(float(group["momentum"]), dtype=torch.float64)
    lrs, momenta = [], []

    def record():
        lrs.append(float(group["lr"]))
        if with_momentum:
            momenta.append(float(group["momentum"]))

    record()
    # Two steps by hand: the first runs torch's first-step path, the second enters tensor mode.
    while len(lrs) < min(steps, _STEPS_BY_HAND + 1):
        scheduler.step()
        record()
    program = scheduler.__dict__.get("_tensor_program")
    remaining = steps - len(lrs)
    if program is not None and remaining > 0:
        lr_values = torch.empty(remaining, dtype=torch.float64)
        momentum_values = torch.empty(remaining, dtype=torch.float64) if with_momentum else None
        _C.record_program(
            program.capsule,
            remaining,
            lr_values.data_ptr(),
            momentum_values.data_ptr() if with_momentum else 0,
        )
        program.check_status()
        lrs += lr_values.tolist()
        if with_momentum:
            momenta += momentum_values.tolist()
    while len(lrs) < steps:
        scheduler.step()
        record()
    return Curve(text, lrs, momenta if with_momentum else None)


def _check_curves(curves: list[Curve]) -> None:
    if not curves:
        raise ValueError("no curves: give at least one")
    if len({len(c.lrs) for c in curves}) > 1:
        raise ValueError(f"the curves have different lengths: {sorted({len(c.lrs) for c in curves})}")


def to_csv(curves: list[Curve]) -> str:
    """One row per step; one LR column per curve, and a momentum column for those that cycle it.
    ValueError for no curves, or curves of different lengths."""
    _check_curves(curves)
    header = ["step"]
    columns = []
    for c in curves:
        header.append(f"{c.label} lr")
        columns.append(c.lrs)
        if c.momenta is not None:
            header.append(f"{c.label} momentum")
            columns.append(c.momenta)
    out = io.StringIO()
    out.write(",".join(_csv_field(h) for h in header) + "\n")
    for step, row in enumerate(zip(*columns)):
        out.write(",".join([str(step), *(repr(v) for v in row)]) + "\n")
    return out.getvalue()


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def to_png(curves: list[Curve], path, log_lr: bool = False) -> None:
    """LR against step on top, momentum below when a curve cycles it; one line per curve; PNG whatever
    `path`'s extension. ValueError for no curves, curves of different lengths, a log axis without a
    positive LR, or values matplotlib cannot draw (a range beyond floats); OSError where `path` cannot
    be written."""
    _check_curves(curves)
    if log_lr and not any(lr > 0 for c in curves for lr in c.lrs):
        raise ValueError("a log LR axis needs a positive LR; every LR of these curves is <= 0 (or nan)")
    try:
        _draw(curves, path, log_lr)
    except (ValueError, OverflowError) as error:  # matplotlib's axis arithmetic
        raise ValueError(f"cannot draw these values ({_describe(error)}); their CSV has them") from None


def _draw(curves: list[Curve], path, log_lr: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_momentum = any(c.momenta is not None for c in curves)
    rows = 2 if with_momentum else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.2 * rows + 0.6), sharex=True, squeeze=False)
    lr_axis = axes[0][0]
    for k, c in enumerate(curves):
        lr_axis.plot(range(len(c.lrs)), c.lrs, label=c.label, linewidth=1.4, color=f"C{k}")
    lr_axis.set_ylabel("learning rate")
    if log_lr:
        lr_axis.set_yscale("log")
    lr_axis.grid(alpha=0.3)
    lr_axis.legend(fontsize=8)
    if with_momentum:
        momentum_axis = axes[1][0]
        for k, c in enumerate(curves):  # each curve keeps its colour from the LR axis
            if c.momenta is not None:
                momentum_axis.plot(range(len(c.momenta)), c.momenta, label=c.label, linewidth=1.4, color=f"C{k}")
        momentum_axis.set_ylabel("momentum")
        momentum_axis.grid(alpha=0.3)
    axes[-1][0].set_xlabel("step")
    fig.suptitle("schedx: schedules before training")
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=120, format="png")
    finally:
        plt.close(fig)
