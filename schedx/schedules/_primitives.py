"""The primitives of schedx.schedules: the math functions on schedules, the schedules people compose
(linear, cosine, exponential, ...) and the combinators (join, warmup, piecewise, product, ...).
"""
from __future__ import annotations

import functools
import math
import operator
from typing import Sequence

from ._expression import Number, Schedule, _const, _is_number, _unary, as_schedule, base_lr, step


def where(condition, if_true, if_false) -> Schedule | Number:
    """`if_true if condition else if_false`; only the chosen side is evaluated. A condition that is not
    a schedule is decided now (Python's truth value) and the chosen side returned as it is.

    >>> from schedx import schedules as S
    >>> s = S.where(S.step() < 10, 1.0, 0.1)
    >>> s(3), s(12)
    (1.0, 0.1)
    """
    if not isinstance(condition, Schedule):
        return if_true if condition else if_false
    return Schedule("where", (condition, as_schedule(if_true), as_schedule(if_false)))


def minimum(a, b):
    """Python's ``min(a, b)``: `b` when ``b < a``, else `a`.

    >>> from schedx import schedules as S
    >>> s = S.minimum(S.step() / 10, 1.0)
    >>> s(4), s(40)
    (0.4, 1.0)
    """
    return where(b < a, b, a)


def maximum(a, b):
    """Python's ``max(a, b)``: `b` when ``b > a``, else `a`.

    >>> from schedx import schedules as S
    >>> s = S.maximum(0.1, 1.0 - S.step() / 10)
    >>> s(4), s(40)
    (0.6, 0.1)
    """
    return where(b > a, b, a)


def cos(x):
    """``math.cos(x)``, `x` a schedule or a number (radians).

    >>> from schedx import schedules as S
    >>> S.cos(S.step())(0)
    1.0
    """
    return _unary("cos", x)


def sin(x):
    """``math.sin(x)``, `x` a schedule or a number (radians).

    >>> from schedx import schedules as S
    >>> S.sin(0.5 * S.step())(1)
    0.479425538604203
    """
    return _unary("sin", x)


def exp(x):
    """``math.exp(x)``, `x` a schedule or a number.

    >>> from schedx import schedules as S
    >>> S.exp(-0.1 * S.step())(10)
    0.36787944117144233
    """
    return _unary("exp", x)


def sqrt(x):
    """``math.sqrt(x)``, `x` a schedule or a number.

    >>> from schedx import schedules as S
    >>> S.sqrt(S.step())(16)
    4.0
    """
    return _unary("sqrt", x)


def log(x, base=None):
    """``math.log(x)`` or ``math.log(x, base)`` (computed as ``log(x) / log(base)``).

    >>> from schedx import schedules as S
    >>> S.log(S.step() + 1)(0), S.log(S.step(), 2)(8)
    (0.0, 3.0)
    """
    return _unary("log", x) if base is None else _unary("log", x) / _unary("log", base)


def constant(value: Number) -> Schedule:
    """``value`` at every step (optax's constant_schedule). `value` must be a number (int, float or
    bool): TypeError otherwise.

    >>> from schedx import schedules as S
    >>> S.constant(0.5)(100)
    0.5
    """
    if not _is_number(value):  # a schedule in a constant node would hide its dimension and its steps
        raise TypeError(f"constant takes a number, got {type(value).__name__}")
    return _const(value)


def _positive_steps(steps: int, name: str = "steps") -> None:
    if type(steps) is not int or steps < 1:
        raise ValueError(f"{name} must be a positive int, got {steps!r}")


def _progress(steps: int) -> Schedule:
    """min(step, steps) / steps: 0 at the start, 1 from `steps` on."""
    return minimum(step(), steps) / steps


def linear(start: float = 1.0, end: float = 0.0, steps: int = 1) -> Schedule:
    """From `start` to `end` in `steps` steps, then `end` (optax's linear_schedule):

        value = start + (end - start) * min(step, steps) / steps

    `steps` is a positive int (ValueError otherwise).

    >>> from schedx import schedules as S
    >>> s = S.linear(1.0, 0.1, steps=10)
    >>> s(0), s(5)
    (1.0, 0.55)
    """
    _positive_steps(steps)
    return start + (end - start) * _progress(steps)


def cosine(start: float = 1.0, end: float = 0.0, steps: int = 1) -> Schedule:
    """Half a cosine from `start` to `end` in `steps` steps, then `end`:

        value = end + (start - end) * 0.5 * (1 + cos(pi * min(step, steps) / steps))

    `steps` is a positive int (ValueError otherwise). Cosine annealing is from Loshchilov & Hutter,
    "SGDR: Stochastic Gradient Descent with Warm Restarts" (ICLR 2017); this is one cycle of it, as
    optax's cosine_decay_schedule, and torch's CosineAnnealingLR up to `steps` (which then holds `end`
    rather than rising again).

    >>> from schedx import schedules as S
    >>> s = S.cosine(steps=100, end=0.1)
    >>> s(0), s(50), s(100), s(200)
    (1.0, 0.55, 0.1, 0.1)
    """
    _positive_steps(steps)
    return end + (start - end) * (0.5 * (1.0 + cos(math.pi * _progress(steps))))


def exponential(rate: float, every: int = 1, start: float = 1.0, staircase: bool = False) -> Schedule:
    """`start * rate ** (step / every)`; with `staircase`, the exponent is `step // every`:

        value = start * rate ** (step / every)      (staircase: rate ** (step // every))

    `every` is a positive int (ValueError otherwise). optax's exponential_decay (its decay_rate and
    transition_steps); with ``every=1``, torch's ExponentialLR.

    >>> from schedx import schedules as S
    >>> S.exponential(0.5, every=10)(20), S.exponential(0.5, every=10, staircase=True)(15)
    (0.25, 0.5)
    """
    _positive_steps(every, "every")
    exponent = step() // every if staircase else step() / every
    return start * rate**exponent


def polynomial(start: float = 1.0, end: float = 0.0, steps: int = 1, power: float = 1.0) -> Schedule:
    """`(start - end) * (1 - progress) ** power + end`, progress going from 0 to 1 in `steps`:

        value = (start - end) * (1 - min(step, steps) / steps) ** power + end

    `steps` is a positive int (ValueError otherwise); after `steps`, `end`. optax's
    polynomial_schedule; torch's PolynomialLR is ``polynomial(1.0, 0.0, total_iters, power)``.

    >>> from schedx import schedules as S
    >>> s = S.polynomial(steps=10, power=2.0)
    >>> s(5), s(10)
    (0.25, 0.0)
    """
    _positive_steps(steps)
    return (start - end) * (1 - _progress(steps)) ** power + end


def step_decay(every: int, gamma: float = 0.1) -> Schedule:
    """`gamma ** (step // every)`: StepLR's schedule in closed form (``0.1 ** (epoch // 30)``):

        value = gamma ** (step // every)

    `every` is a positive int (ValueError otherwise). torch's StepLR(step_size=every, gamma=gamma).

    >>> from schedx import schedules as S
    >>> s = S.step_decay(30, gamma=0.1)
    >>> s(29), s(30), s(65)
    (1.0, 0.1, 0.010000000000000002)
    """
    _positive_steps(every, "every")
    return gamma ** (step() // every)


def _one_kind(parts: Sequence) -> list:
    """The parts of a combinator (schedules or numbers, a number being a constant factor) as they are,
    or, where one gives LRs, each of the others as the LR it is a factor of (times base_lr)."""
    if not any(isinstance(p, Schedule) and p.dimension == 1 for p in parts):
        return list(parts)
    return [p if isinstance(p, Schedule) and p.dimension == 1 else as_schedule(p) * base_lr() for p in parts]


def piecewise_constant(boundaries: Sequence[int], values: Sequence[Number]) -> Schedule:
    """`values[k]`, k the number of boundaries at or before the step (MultiStepLR's bisect_right).
    Where a value gives LRs, the others are factors of the initial LR (see the module's documentation).

        value = values[k],  k = bisect_right(boundaries, step)

    `values` has one entry more than `boundaries`, which are sorted (ValueError otherwise). torch's
    MultiStepLR is ``piecewise_constant(milestones, [gamma ** k for k in range(len(milestones) + 1)])``.

    >>> from schedx import schedules as S
    >>> s = S.piecewise_constant([10, 20], [1.0, 0.1, 0.01])
    >>> s(9), s(10), s(25)
    (1.0, 0.1, 0.01)
    """
    values = _one_kind(values)
    if len(values) != len(boundaries) + 1:
        raise ValueError("piecewise_constant needs one value more than boundaries")
    if list(boundaries) != sorted(boundaries):
        raise ValueError("boundaries must be sorted")
    result = as_schedule(values[-1])
    for boundary, value in zip(reversed(boundaries), reversed(values[:-1])):
        result = where(step() < boundary, value, result)
    return result


def piecewise_linear(steps: Sequence[int], values: Sequence[Number]) -> Schedule:
    """Straight lines through the points (steps[k], values[k]); flat before the first, after the last.
    Where a value gives LRs, the others are factors of the initial LR (see the module's documentation).

        value = values[k] + (values[k + 1] - values[k]) * (step - steps[k]) / (steps[k + 1] - steps[k])
                for steps[k] <= step < steps[k + 1]

    as ``numpy.interp(step, steps, values)``. `steps` and `values` are as long as each other, at least
    one, and `steps` strictly increasing (ValueError otherwise).

    >>> from schedx import schedules as S
    >>> s = S.piecewise_linear([0, 10, 20], [0.0, 1.0, 0.5])
    >>> s(5), s(15), s(30)
    (0.5, 0.75, 0.5)
    """
    values = _one_kind(values)
    if len(steps) != len(values) or not steps:
        raise ValueError("piecewise_linear needs as many values as steps, at least one")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError("steps must be strictly increasing")
    t = step()
    result = as_schedule(values[-1])
    for k in range(len(steps) - 2, -1, -1):
        segment = values[k] + (values[k + 1] - values[k]) * ((t - steps[k]) / (steps[k + 1] - steps[k]))
        result = where(t < steps[k + 1], segment, result)
    return where(t < steps[0], values[0], result)


def join(schedules: Sequence, boundaries: Sequence[int]) -> Schedule:
    """`schedules[0]` until `boundaries[0]`, then `schedules[1]` started afresh (its step 0 at the
    boundary), and so on (optax's join_schedules). Where one of them gives LRs (it is built on
    base_lr), each of the others (a factor schedule or a number) is the factor of the initial LR it
    is: multiplied by base_lr.

        value = schedules[k](step - boundaries[k - 1])   for boundaries[k - 1] <= step < boundaries[k]

    (boundaries[-1] taken as 0 for k = 0). There is one schedule more than boundaries (ValueError
    otherwise).

    >>> from schedx import schedules as S
    >>> s = S.join([S.linear(0.0, 1.0, steps=5), S.cosine(steps=10)], [5])
    >>> s(2), s(5), s(10)
    (0.4, 1.0, 0.5)
    """
    if len(schedules) != len(boundaries) + 1:
        raise ValueError("join needs one schedule more than boundaries")
    parts = [as_schedule(s) for s in _one_kind(schedules)]
    result = parts[-1].shift(boundaries[-1]) if boundaries else parts[-1]
    for k in range(len(boundaries) - 1, -1, -1):
        start = boundaries[k - 1] if k > 0 else 0
        result = where(step() < boundaries[k], parts[k].shift(start) if start else parts[k], result)
    return result


def warmup(steps: int, then=1.0, start: float = 0.0) -> Schedule:
    """A linear rise from `start` to 1 in `steps` steps, then `then` from its step 0. Where `then`
    gives LRs (timm_cosine), so does the rise: from `start` times the initial LR to the initial LR.

        value = start + (1 - start) * step / steps   for step < steps, then then(step - steps)

    that is ``join([linear(start, 1.0, steps), then], [steps])``; `steps` is a positive int (ValueError
    otherwise). Linear warmup as in Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in
    1 Hour" (2017).

    >>> from schedx import schedules as S
    >>> s = S.warmup(5, S.cosine(steps=10))
    >>> s(2), s(5), s(10)
    (0.4, 1.0, 0.5)
    """
    _positive_steps(steps)
    return join([linear(start, 1.0, steps), then], [steps])


def scale(schedule, factor: Number) -> Schedule:
    """`schedule` times `factor`: ``value = schedule(step) * factor`` (`schedule` may be a number).

    >>> from schedx import schedules as S
    >>> S.scale(S.cosine(steps=10), 0.5)(5)
    0.25
    """
    return as_schedule(schedule) * factor


def product(*schedules) -> Schedule:
    """The product of the schedules (or numbers): ``value = schedules[0](step) * schedules[1](step) * ...``.

    >>> from schedx import schedules as S
    >>> S.product(S.linear(steps=10), S.step_decay(5, 0.5))(6)
    0.2
    """
    return functools.reduce(operator.mul, (as_schedule(s) for s in schedules))


def cyclic(low: float, high: float, period: int, mode: str = "triangular", gamma: float = 1.0) -> Schedule:
    """A triangle wave between `low` and `high` (CyclicLR's modes): its amplitude halves every cycle
    in "triangular2" and shrinks by ``gamma ** step`` in "exp_range":

        value = low + (high - low) * (1 - abs(2 * (step % period) / period - 1)) * amplitude
        amplitude = 1 (triangular), 0.5 ** (step // period) (triangular2), gamma ** step (exp_range)

    `period` (a whole cycle, up and down) is a positive int and `mode` one of the three (ValueError
    otherwise). Smith, "Cyclical Learning Rates for Training Neural Networks" (WACV 2017); torch's
    CyclicLR with step_size_up = step_size_down = period / 2.

    >>> from schedx import schedules as S
    >>> s = S.cyclic(0.1, 1.0, period=10)
    >>> s(0), s(5), s(10)
    (0.1, 1.0, 0.1)
    >>> S.cyclic(0.1, 1.0, period=10, mode="triangular2")(15)
    0.55
    """
    _positive_steps(period, "period")
    t = step()
    position = (t % period) / period
    triangle = 1.0 - abs(2.0 * position - 1.0)
    amplitude = {
        "triangular": 1.0,
        "triangular2": 0.5 ** (t // period),
        "exp_range": gamma**t,
    }.get(mode)
    if amplitude is None:
        raise ValueError(f"mode must be triangular, triangular2 or exp_range, got {mode!r}")
    return low + (high - low) * triangle * amplitude
