r"""Custom schedules, compiled into the engine.

A :class:`Schedule` is an expression in the step (LambdaLR's ``last_epoch``): built from the
primitives below, from arithmetic on them, or traced from a plain Python function (:func:`trace`).
Every operation is the Python operation of the same name, with Python's int and float semantics, so a
schedule's value is what Python computes for the same expression; the engine (csrc/expr.h) evaluates
the compiled expression once per step, on the CPU or in the CUDA kernel, instead of a Python call per
parameter group.

    from schedx import lr_scheduler, schedules as S
    schedule = S.warmup(500, S.cosine(steps=9_500, end=0.01))
    scheduler = lr_scheduler.ScheduleLR(optimizer, schedule)   # each group's LR: initial LR * value

A schedule's value is a factor of each group's initial LR, as a LambdaLR lambda's is, so a schedule is
also a valid ``lr_lambda`` for torch's own LambdaLR (``schedule(step)`` evaluates it in Python). A
schedule built on :func:`base_lr` gives the LR itself instead (timm's schedules, with an absolute
minimum LR, are written that way).

Composition keeps the two kinds apart, so that it means what it says. Each schedule knows its
`dimension`: None for a constant, 0 for a factor, 1 for an LR. The combinators (:func:`join`,
:func:`warmup`, :func:`piecewise_constant`, :func:`piecewise_linear`) take schedules, a number being a
constant factor: where one part gives LRs, every other part is taken as the factor of the initial LR
it is (multiplied by base_lr), so ``warmup(5, timm_cosine(100))`` ramps the LR from 0 to the initial
LR, where timm's cosine starts. The expression operations (arithmetic, comparisons, :func:`where`,
:func:`minimum`, :func:`maximum`, the math functions) are Python's on the values, with the units of
physics: a factor times an LR is an LR, an LR divided by an LR is a factor, a number added to or
compared with an LR is an LR; and an operation whose result is neither a factor nor an LR (a factor
plus an LR, an LR times an LR, the cosine of an LR, ...) raises ValueError when it is built.

Like LambdaLR, a schedule is closed-form: in a ChainedScheduler its step overwrites what the schedulers
before it wrote, as torch's LambdaLR does; in a SequentialLR it restarts from step 0 at its milestone.
Unlike CosineAnnealingLR, the primitives hold their end value after their last step (as optax does).
"""
from __future__ import annotations

from ._expression import Number, Schedule, as_schedule, base_lr, exact_on_device, step
from ._families import (
    constant_with_warmup,
    cosine_with_hard_restarts,
    cosine_with_min_lr,
    cosine_with_warmup,
    inverse_sqrt,
    linear_with_warmup,
    polynomial_decay_with_warmup,
    timm_cosine,
    warmup_stable_decay,
)
from ._primitives import (
    constant,
    cos,
    cosine,
    cyclic,
    exp,
    exponential,
    join,
    linear,
    log,
    maximum,
    minimum,
    piecewise_constant,
    piecewise_linear,
    polynomial,
    product,
    scale,
    sin,
    sqrt,
    step_decay,
    warmup,
    where,
)
from ._tracer import Guard, TraceError, guards_hold, trace

__all__ = [
    "Schedule",
    "TraceError",
    "step",
    "base_lr",
    "constant",
    "linear",
    "cosine",
    "exponential",
    "polynomial",
    "step_decay",
    "piecewise_constant",
    "piecewise_linear",
    "warmup",
    "join",
    "scale",
    "product",
    "cyclic",
    "where",
    "minimum",
    "maximum",
    "cos",
    "sin",
    "exp",
    "log",
    "sqrt",
    "trace",
    # the families people use (transformers, timm)
    "constant_with_warmup",
    "linear_with_warmup",
    "cosine_with_warmup",
    "cosine_with_hard_restarts",
    "polynomial_decay_with_warmup",
    "inverse_sqrt",
    "warmup_stable_decay",
    "cosine_with_min_lr",
    "timm_cosine",
]

# Each public name is this module's, wherever it is defined (the expression language, the primitives,
# the tracer, the families: the modules beside this one), as when schedx.schedules was one module: its
# pickles, tracebacks, help() and doctests name schedx.schedules.
for _public in (*__all__, "as_schedule", "exact_on_device"):
    globals()[_public].__module__ = __name__
del _public
