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
"""
from __future__ import annotations

import ast
import dataclasses
import io
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
    kwargs = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ValueError(f"cannot read schedule {text!r}: ** is not supported")
        try:
            kwargs[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            raise ValueError(
                f"cannot read schedule {text!r}: the value of {keyword.arg} is not a literal"
            ) from None
    return node.func.id, kwargs


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
        if any(k.arg is None for k in node.keywords):
            raise ValueError(f"cannot read schedule {text!r}: ** is not supported")
        args = [_evaluate_call(a, text) for a in node.args]
        kwargs = {k.arg: _evaluate_call(k.value, text) for k in node.keywords}
        try:
            return function(*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{node.func.id}: {error}") from None
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_evaluate_call(e, text) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"cannot read schedule {text!r}: {ast.unparse(node)} is not a literal") from None


def custom_curve(text: str, schedule: schedules.Schedule, steps: int, lr: float) -> Curve:
    """The LRs ScheduleLR writes for one group whose initial LR is `lr`, at steps 0 … steps-1, in one
    engine call."""
    lrs = torch.empty(steps, dtype=torch.float64)
    done = _C.record_schedule(schedule._program(), steps, float(lr), lrs.data_ptr())
    if done < steps:
        try:
            schedule.lr(done, lr)
        except Exception as error:
            raise ValueError(f"{text}: fails at step {done}: {type(error).__name__}: {error}") from None
        raise ValueError(f"{text}: at step {done} an int leaves the engine's exact range (2**53)")
    return Curve(text, lrs.tolist(), None)


def build(text: str, lr: float) -> tuple[lr_scheduler.LRScheduler, torch.optim.Optimizer]:
    """The scheduler `text` describes, on a fresh one-group SGD optimizer whose LR is `lr`."""
    name, kwargs = parse_schedule(text)
    cls = PLOTTABLE.get(name)
    if cls is None:
        raise ValueError(f"unknown schedule {name!r}; known: {known_names()}")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=MOMENTUM)
    try:
        return cls(optimizer, **kwargs), optimizer
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: {error}") from None


def _cycles_momentum(scheduler) -> bool:
    return bool(getattr(scheduler, "cycle_momentum", False))


def curve(text: str, steps: int, lr: float = 0.1) -> Curve:
    """The LR (and momentum) at steps 0 … steps-1 of the scheduler or custom schedule `text`, for a
    base LR `lr`."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    custom = custom_schedule(text)
    if custom is not None:
        return custom_curve(text, custom, steps, lr)
    with warnings.catch_warnings():
        # A curve steps the scheduler with no optimizer step: torch's warning about that order is
        # about training loops.
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        return _scheduler_curve(text, steps, lr)


def _scheduler_curve(text: str, steps: int, lr: float) -> Curve:
    scheduler, optimizer = build(text, lr)
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
    while len(lrs) < min(steps, 3):
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


def to_csv(curves: list[Curve]) -> str:
    """One row per step; one LR column per curve, and a momentum column for those that cycle it."""
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
    """LR against step on top, momentum below when a curve cycles it; one line per curve."""
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
