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

import builtins
import dis
import functools
import math
import operator
import re
import struct
import sys
import threading
import types
from typing import Any, Callable, Sequence

from . import _engine
from ._engine import _C

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

Number = int | float

# csrc/expr.h's ExprOp, by the name of the Python operation each one is (ConstFloat: "const_float").
_OPCODES = {
    re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower(): code
    for name, code in _engine.CONSTANTS["ExprOp"].items()
}
_MAX_STACK, _MAX_INSTRUCTIONS, _MAX_EXACT_INT = (
    _engine.CONSTANTS["Limit"][name] for name in ("MAX_EXPR_STACK", "MAX_EXPR_INSTRUCTIONS", "MAX_EXACT_INT")
)

# What each operation is in Python: the schedule's value in Python is these applied to the operands.
_BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}
_UNARY = {
    "neg": operator.neg,
    "abs": builtins.abs,
    "not": operator.not_,
    "to_float": builtins.float,
    "to_int": builtins.int,
    "floor": math.floor,
    "ceil": math.ceil,
    "cos": math.cos,
    "sin": math.sin,
    "tan": math.tan,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sqrt": math.sqrt,
}


class TraceError(ValueError):
    """A function could not be turned into a schedule (see :func:`trace`); a ValueError.

    >>> from schedx import schedules as S
    >>> S.trace(lambda t: print(t))
    Traceback (most recent call last):
    ...
    schedx.schedules.TraceError: ...
    """


def _is_number(value) -> bool:
    return type(value) in (int, float, bool)


class Schedule:
    """An expression in the step; see the module's documentation.

    Arithmetic (``+ - * / // % **``, unary ``-``, ``abs``, ``math.floor`` / ``math.ceil`` /
    ``math.trunc``) and comparisons on schedules and numbers give schedules. A schedule has no truth
    value (use :func:`where`), except while :func:`trace` runs a function.

    ``schedule(step)`` is its value at `step`, computed in Python (``schedule(step, base_lr=...)`` for
    one built on :func:`base_lr`); the engine computes the same value.

    >>> from schedx import schedules as S
    >>> s = 0.5 * S.cosine(steps=100) + 0.1
    >>> s(0), s(50), s(100)
    (0.6, 0.35, 0.1)
    >>> (S.step() // 10)(25)
    2
    """

    # The empty `__dict__` slot keeps torch's LambdaLR.state_dict() working: it saves the `__dict__` of
    # lambdas that are not plain functions (here, nothing).
    __slots__ = ("op", "args", "value", "dimension", "_compiled", "__dict__", "__weakref__")

    def __init__(self, op: str, args: tuple = (), value: Number | None = None):
        self.op = op
        self.args = args
        self.value = value
        self.dimension = _dimension(op, args)  # None: a constant; 0: a factor; 1: an LR
        self._compiled = None

    # -- building -----------------------------------------------------------------------------------

    def __add__(self, other): return _binary("add", self, other)
    def __radd__(self, other): return _binary("add", other, self)
    def __sub__(self, other): return _binary("sub", self, other)
    def __rsub__(self, other): return _binary("sub", other, self)
    def __mul__(self, other): return _binary("mul", self, other)
    def __rmul__(self, other): return _binary("mul", other, self)
    def __truediv__(self, other): return _binary("truediv", self, other)
    def __rtruediv__(self, other): return _binary("truediv", other, self)
    def __floordiv__(self, other): return _binary("floordiv", self, other)
    def __rfloordiv__(self, other): return _binary("floordiv", other, self)
    def __mod__(self, other): return _binary("mod", self, other)
    def __rmod__(self, other): return _binary("mod", other, self)
    def __pow__(self, other): return _binary("pow", self, other)
    def __rpow__(self, other): return _binary("pow", other, self)
    def __lt__(self, other): return _binary("lt", self, other)
    def __le__(self, other): return _binary("le", self, other)
    def __gt__(self, other): return _binary("gt", self, other)
    def __ge__(self, other): return _binary("ge", self, other)
    def __eq__(self, other): return _binary("eq", self, other)  # type: ignore[override]
    def __ne__(self, other): return _binary("ne", self, other)  # type: ignore[override]
    def __neg__(self): return _unary("neg", self)
    def __pos__(self): return self
    def __abs__(self): return _unary("abs", self)
    def __floor__(self): return _unary("floor", self)
    def __ceil__(self): return _unary("ceil", self)
    def __trunc__(self): return _unary("to_int", self)

    def __hash__(self) -> int:
        # A traced function that looks the step up in a dict would find nothing, silently.
        if _TRACING.active:
            raise _Refused("the function hashes the step (a dict or set lookup)")
        return object.__hash__(self)

    def __bool__(self) -> bool:
        if _TRACING.active:
            return _TRACING.decide(self)
        raise TypeError("a schedule has no truth value: use schedules.where(condition, a, b)")

    def __float__(self):
        raise TypeError("a schedule is not a number: call it with a step, schedule(step)")

    __int__ = __index__ = __float__

    def __repr__(self) -> str:
        if _TRACING.active:  # `f"{step}"`, `"%s" % step`: a string Python would spell differently
            raise _Refused("the function formats the step as a string")
        if self.op in ("const_int", "const_float"):
            return repr(self.value)
        if self.op in ("step", "base_lr"):
            return self.op
        return f"{self.op}({', '.join(map(repr, self.args))})"

    # -- evaluating ---------------------------------------------------------------------------------

    @property
    def absolute(self) -> bool:
        """Whether the value is an LR (built on base_lr) rather than a factor of the initial LR."""
        return self.dimension == 1

    def __call__(self, step: int, base_lr: float | None = None) -> Number:
        """The value at `step`, computed in Python (the engine computes the same value)."""
        if base_lr is None and self._program()[2]:
            raise TypeError("this schedule reads base_lr: call it as schedule(step, base_lr=...)")
        return _evaluate(self, step, base_lr, {})

    def lr(self, step: int, base_lr: float) -> Number:
        """The LR of a group whose initial LR is `base_lr` (LambdaLR's ``base_lr * lambda(step)``)."""
        return self(step, base_lr) if self.absolute else base_lr * self(step, base_lr)

    def _program(self) -> tuple[bytes, bytes, bool]:
        """The compiled program the engine runs: (code, constants, absolute). An absolute program reads
        base_lr and its value is the LR; a factor that reads base_lr is compiled as ``factor * base_lr``."""
        if self._compiled is None:
            self._compiled = _Compiler().compile(self)
        return self._compiled

    def shift(self, steps: int) -> Schedule:
        """This schedule delayed by `steps`: its step 0 comes at step `steps`."""
        return _substitute_step(self, step() - steps)


# The steps a tensor-mode program is taken to reach (2.8e14: centuries at a thousand steps a second).
_MAX_DEVICE_STEP = 2**48
_ANY = (-math.inf, math.inf)
_INT_RESULTS = ("const_int", "step", "floor", "ceil", "to_int", "lt", "le", "gt", "ge", "eq", "ne", "not")
_INT_IF_INTS = ("add", "sub", "mul", "floordiv", "mod", "pow", "neg", "abs")


def exact_on_device(schedule: Schedule) -> bool:
    """Whether the engine computes `schedule` at every step a tensor-mode program can reach, except
    where Python raises: no int in it can pass 2**53 (``e * e`` can, ``e // 30`` cannot). A program
    cannot hand a step to Python, so only such a schedule runs in tensor mode."""
    memo: dict[int, tuple] = {}
    for node in _post_order(schedule):
        args = [memo[id(a)] for a in node.args]
        may_be_int = node.op in _INT_RESULTS or (
            node.op in _INT_IF_INTS and all(a[2] for a in args)
        ) or (node.op == "where" and (args[1][2] or args[2][2]))
        lo, hi = _value_bounds(node, args)
        if may_be_int and not (-_MAX_EXACT_INT < lo and hi < _MAX_EXACT_INT):
            return False
        memo[id(node)] = (lo, hi, may_be_int)
    return True


def _post_order(schedule: Schedule) -> list[Schedule]:
    order, seen, stack = [], set(), [(schedule, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((a, False) for a in node.args)
    return order


def _value_bounds(node: Schedule, args: list) -> tuple[float, float]:
    """Bounds on the node's value over the steps 0 .. _MAX_DEVICE_STEP, given its operands' (NaN and
    the steps where Python raises aside)."""
    op = node.op
    if op in ("const_int", "const_float"):
        return (node.value, node.value)
    if op == "step":
        return (0, _MAX_DEVICE_STEP)
    if op in ("lt", "le", "gt", "ge", "eq", "ne", "not"):
        return (0, 1)
    if op in ("cos", "sin"):
        return (-1.0, 1.0)
    if not args:  # base_lr
        return _ANY
    if op == "where":
        return (min(args[1][0], args[2][0]), max(args[1][1], args[2][1]))
    if op in ("floor", "ceil", "to_int", "to_float"):
        return (math.floor(args[0][0]) if math.isfinite(args[0][0]) else args[0][0], args[0][1] + 1)
    (a, b), (c, d) = args[0][:2], args[-1][:2]
    largest = max(abs(a), abs(b))
    if op == "add":
        return (a + c, b + d)
    if op == "sub":
        return (a - d, b - c)
    if op == "neg":
        return (-b, -a)
    if op == "abs":
        return (0, largest)
    if op == "mul":
        other = max(abs(c), abs(d))
        return (-largest * other, largest * other) if largest and other else (0, 0)
    if op == "mod":  # |x % y| < |y|
        return (-max(abs(c), abs(d)), max(abs(c), abs(d)))
    if op in ("floordiv", "truediv") and (c > 0 or d < 0):  # |x / y| <= |x| / min |y|
        bound = largest / min(abs(c), abs(d)) + 1
        return (-bound, bound)
    if op == "pow" and c >= 0 and d <= 64:
        bound = max(largest, 1) ** d
        return (-bound, bound)
    return _ANY


def _const(value: Number) -> Schedule:
    if type(value) is bool:
        value = int(value)
    return Schedule("const_int" if type(value) is int else "const_float", value=value)


def as_schedule(value) -> Schedule:
    """A schedule or a Python number as a schedule."""
    if isinstance(value, Schedule):
        return value
    if _is_number(value):
        return _const(value)
    raise TypeError(f"expected a schedule or a number, got {type(value).__name__}")


def _binary(op: str, a, b):
    if not (isinstance(a, Schedule) or _is_number(a)) or not (isinstance(b, Schedule) or _is_number(b)):
        return NotImplemented
    if not isinstance(a, Schedule) and not isinstance(b, Schedule):
        return _BINARY[op](a, b)
    return _TRACING.record(Schedule(op, (as_schedule(a), as_schedule(b))))


def _unary(op: str, a):
    if not isinstance(a, Schedule):
        return _UNARY[op](a)
    return _TRACING.record(Schedule(op, (a,)))


# The dimension of each operation's result (None: a constant, 0: a factor, 1: an LR), by its operands'.
_SAME_DIMENSION = {"add": "add", "sub": "subtract", "mod": "take the remainder of", "lt": "compare",
                   "le": "compare", "gt": "compare", "ge": "compare", "eq": "compare", "ne": "compare"}
_COMPARISONS = {"lt", "le", "gt", "ge", "eq", "ne"}
_FACTORS_ONLY = {"cos", "sin", "tan", "exp", "log", "log2", "log10", "sqrt", "pow"}
_KIND = {None: "a number", 0: "a factor schedule (its value multiplies the initial LR)",
         1: "an LR schedule (built on base_lr)"}


def _dimension(op: str, args: tuple) -> int | None:
    """The dimension of `op` applied to `args`; ValueError where the result is neither a factor nor
    an LR, or mixes the two."""
    if op in ("const_int", "const_float"):
        return None
    if op in ("step", "base_lr"):
        return int(op == "base_lr")
    dims = [a.dimension for a in args]
    if op == "where":
        # A choice between numbers stays a number: the schedule around it says what they are (inside
        # an LR schedule, LRs).
        return _common_dimension("choose between", dims[1], dims[2])
    if op in _SAME_DIMENSION:
        common = _common_dimension(_SAME_DIMENSION[op], *dims)
        return (None if all(d is None for d in dims) else 0) if op in _COMPARISONS else common
    if all(d is None for d in dims):
        return None
    if op in _FACTORS_ONLY:
        if 1 in dims:
            raise ValueError(f"{op} of an LR schedule (built on base_lr) is neither a factor nor an LR")
        return 0
    if op == "mul":
        result = sum(d or 0 for d in dims)
    elif op in ("truediv", "floordiv"):
        numerator, denominator = dims
        # A number divided by an LR is the number as a fraction of it: the number is an LR.
        result = 0 if numerator is None and denominator == 1 else (numerator or 0) - (denominator or 0)
    else:  # neg, abs, not, to_float, to_int, floor, ceil
        result = 0 if op == "not" else dims[0]
    if result not in (0, 1):
        raise ValueError(
            f"{op} of {_KIND[dims[0]]} and {_KIND[dims[1]]} is neither a factor nor an LR"
        )
    return result


def _common_dimension(verb: str, *dims):
    known = {d for d in dims if d is not None}
    if len(known) > 1:
        raise ValueError(
            f"cannot {verb} {_KIND[0]} and {_KIND[1]}: make the factor an LR by multiplying it by base_lr()"
        )
    return known.pop() if known else None


def _evaluate(node: Schedule, step_value: int, base: float | None, memo: dict) -> Number:
    key = id(node)
    if key in memo:
        return memo[key]
    op = node.op
    if op in ("const_int", "const_float"):
        value = node.value
    elif op == "step":
        value = step_value
    elif op == "base_lr":
        value = base
    elif op == "where":
        cond, if_true, if_false = node.args
        chosen = if_true if _evaluate(cond, step_value, base, memo) else if_false
        value = _evaluate(chosen, step_value, base, memo)
    elif op in _BINARY:
        value = _BINARY[op](*(_evaluate(a, step_value, base, memo) for a in node.args))
    else:
        value = _UNARY[op](_evaluate(node.args[0], step_value, base, memo))
    memo[key] = value
    return value


_MAX_NESTING = 256  # below Python's recursion limit: _Compiler.emit recurses


def _check_emittable(schedule: Schedule) -> None:
    """Refuses (ValueError), before emitting anything, a schedule too large for the engine once each
    shared subexpression is emitted at each use (doubling a value 40 times is 40 nodes and 2**40
    operations), or nested too deep to emit."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    for node in _post_order(schedule):
        size[id(node)] = 1 + sum(size[id(a)] for a in node.args)
        height[id(node)] = 1 + max((height[id(a)] for a in node.args), default=0)
        if size[id(node)] > _MAX_INSTRUCTIONS or height[id(node)] > _MAX_NESTING:
            raise ValueError(
                f"schedule too large for the engine (more than {_MAX_INSTRUCTIONS} operations or "
                f"{_MAX_NESTING} levels)"
            )


class _Compiler:
    """A schedule as csrc/expr.h's stack code: post-order, `where` as forward jumps."""

    def __init__(self):
        self.code: list[list[int]] = []
        self.consts: list[float] = []
        self.const_index: dict[tuple, int] = {}
        self.depth = 0
        self.max_depth = 0
        self.absolute = False

    def compile(self, node: Schedule) -> tuple[bytes, bytes, bool]:
        _check_emittable(node)
        self.emit(node)
        if self.absolute and node.dimension != 1:
            # The engine gives a program that reads base_lr the group's LR: this one's factor times it.
            self.push("base_lr")
            self.push("mul", stack_change=-1)
        self.check_size()
        code = struct.pack(f"<{2 * len(self.code)}i", *(x for pair in self.code for x in pair))
        consts = struct.pack(f"<{max(1, len(self.consts))}d", *(self.consts or [0.0]))
        return code, consts, self.absolute

    def check_size(self) -> None:
        if len(self.code) > _MAX_INSTRUCTIONS or self.max_depth > _MAX_STACK:
            raise ValueError(
                f"schedule too large for the engine ({len(self.code)} operations, stack depth "
                f"{self.max_depth}; at most {_MAX_INSTRUCTIONS} and {_MAX_STACK})"
            )

    def push(self, op: str, arg: int = 0, stack_change: int = 1) -> int:
        self.code.append([_OPCODES[op], arg])
        self.depth += stack_change
        self.max_depth = max(self.max_depth, self.depth)
        return len(self.code) - 1

    def constant(self, value: Number) -> None:
        is_int = type(value) is int
        if is_int and abs(value) >= _MAX_EXACT_INT:
            raise ValueError(f"schedule constant {value} is beyond the engine's exact ints (2**53)")
        key = (is_int, value if is_int else float(value).hex())
        if key not in self.const_index:
            self.const_index[key] = len(self.consts)
            self.consts.append(float(value))
        self.push("const_int" if is_int else "const_float", self.const_index[key])

    def emit(self, node: Schedule) -> None:
        op = node.op
        if op in ("const_int", "const_float"):
            self.constant(node.value)
        elif op in ("step", "base_lr"):
            self.absolute |= op == "base_lr"
            self.push(op)
        elif op == "where":
            cond, if_true, if_false = node.args
            self.emit(cond)
            to_false = self.push("jump_if_false", stack_change=-1)
            self.emit(if_true)
            to_end = self.push("jump", stack_change=-1)  # the false side pushes the same slot
            self.code[to_false][1] = len(self.code)
            self.emit(if_false)
            self.code[to_end][1] = len(self.code)
        elif op in _BINARY:
            self.emit(node.args[0])
            self.emit(node.args[1])
            self.push(op, stack_change=-1)
        else:
            self.emit(node.args[0])
            self.push(op, stack_change=0)


def _substitute_step(node: Schedule, replacement: Schedule) -> Schedule:
    memo: dict[int, Schedule] = {}

    def rebuild(n: Schedule) -> Schedule:
        if id(n) not in memo:
            if n.op == "step":
                memo[id(n)] = replacement
            elif not n.args:
                memo[id(n)] = n
            else:
                memo[id(n)] = Schedule(n.op, tuple(rebuild(a) for a in n.args), n.value)
        return memo[id(n)]

    return rebuild(node)


# ---------------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------------


def step() -> Schedule:
    """The step itself (an int: LambdaLR's ``last_epoch``): ``value = step``.

    >>> from schedx import schedules as S
    >>> (0.9 ** S.step())(2)
    0.81
    """
    return Schedule("step")


def base_lr() -> Schedule:
    """The group's initial LR. A schedule built on it (an LR: ``base_lr() * cosine()``) gives the LR
    itself, not a factor; ``x / base_lr()`` is a factor again (see the module's documentation).

    >>> from schedx import schedules as S
    >>> s = S.maximum(1e-4, 0.5 * S.base_lr())
    >>> s.absolute, s(0, base_lr=0.1)
    (True, 0.05)
    """
    return Schedule("base_lr")


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


# ---------------------------------------------------------------------------------------------------
# Tracing plain functions
# ---------------------------------------------------------------------------------------------------


class _Refused(BaseException):
    """The traced function did something the engine cannot do (a BaseException so that the function's
    own `except Exception` does not swallow it)."""


class _Branch(BaseException):
    """A traced function tested a schedule's truth for the first time on this path (a BaseException so
    that the function's own `except Exception` does not swallow it)."""

    def __init__(self, condition: Schedule):
        self.condition = condition


class _Tracing(threading.local):
    """The running trace of this thread: the truth values forced on the current path, the conditions
    they were forced on, and the operations the path computed."""

    def __init__(self):
        self.active = False
        self.operations = 0  # over every path of the trace
        self.start_path([])

    def start_path(self, forced: list[bool]) -> None:
        self.forced = forced
        self.position = 0
        self.decided: list[Schedule] = []
        self.created: list[Schedule] = []

    def decide(self, condition: Schedule) -> bool:
        if self.position == len(self.forced):
            raise _Branch(condition)
        value = self.forced[self.position]
        self.position += 1
        self.decided.append(condition)
        return value

    def record(self, node: Schedule) -> Schedule:
        """`node`, an operation the traced function computed: counted over every path, so that a
        trace stops early, its cost bounded whatever the function computes."""
        if self.active:
            self.created.append(node)
            self.operations += 1
            if self.operations > _MAX_TRACED_OPERATIONS:
                raise _Refused(
                    f"the function computes more than {_MAX_TRACED_OPERATIONS} operations on the step"
                    " (over all its paths)"
                )
        return node


_TRACING = _Tracing()
_MAX_PATHS = 16  # transformers and timm schedules take at most 7
# Each operation on the symbolic step costs tens of times a float operation: a trace stops after this
# many, over all paths (about 2 ms; transformers' schedules take a few dozen).
_MAX_TRACED_OPERATIONS = 512


def _traced_min_max(pick_second: Callable, builtin: Callable):
    def choose(*args, **kwargs):
        values = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
        if kwargs or not values or not any(isinstance(v, Schedule) for v in values):
            return builtin(*args, **kwargs)
        best = values[0]
        for item in values[1:]:
            best = where(pick_second(item, best), item, best)
        return best

    return choose


def _traced_float(x=0.0):
    return _unary("to_float", x) if isinstance(x, Schedule) else float(x)


def _traced_int(x=0, *args):
    return _unary("to_int", x) if isinstance(x, Schedule) and not args else int(x, *args)


def _traced_pow(x, y, *mod):
    if mod:
        return pow(x, y, *mod)
    return x**y


def _math_function(op: str, real: Callable):
    def call(x):
        return _unary(op, x) if isinstance(x, Schedule) else real(x)

    return call


def _traced_log(x, base=None):
    if not isinstance(x, Schedule) and not isinstance(base, Schedule):
        return math.log(x) if base is None else math.log(x, base)
    return log(x, base)


def _traced_math_pow(x, y):
    if not isinstance(x, Schedule) and not isinstance(y, Schedule):
        return math.pow(x, y)
    return _traced_float(x) ** _traced_float(y)


def _traced_fabs(x):
    return abs(_traced_float(x)) if isinstance(x, Schedule) else math.fabs(x)


# The math module as a traced function sees it: the functions the engine has, and the constants.
_TRACED_MATH = types.SimpleNamespace(
    pi=math.pi,
    e=math.e,
    tau=math.tau,
    inf=math.inf,
    nan=math.nan,
    floor=math.floor,
    ceil=math.ceil,
    trunc=math.trunc,
    log=_traced_log,
    pow=_traced_math_pow,
    fabs=_traced_fabs,
    **{name: _math_function(name, getattr(math, name)) for name in ("cos", "sin", "tan", "exp", "log2", "log10", "sqrt")},
)
_TRACED_BUILTINS = {
    "min": _traced_min_max(operator.lt, builtins.min),
    "max": _traced_min_max(operator.gt, builtins.max),
    "float": _traced_float,
    "int": _traced_int,
    "pow": _traced_pow,
    "abs": builtins.abs,
    "round": builtins.round,
} | {name: getattr(builtins, name) for name in ("range", "len", "bool", "any", "all", "enumerate", "zip")}
# From 3.12 on, sum() adds floats with compensation, not as a chain of `+` (what its trace would be).
if sys.version_info < (3, 12):
    _TRACED_BUILTINS["sum"] = builtins.sum
_TRACED_FUNCTIONS = {
    id(getattr(math, name)): getattr(_TRACED_MATH, name)
    for name in ("cos", "sin", "tan", "exp", "log", "log2", "log10", "sqrt", "pow", "fabs", "floor", "ceil", "trunc")
} | {id(getattr(builtins, name)): f for name, f in _TRACED_BUILTINS.items()}


class _Opaque:
    """What a traced function sees in place of a value the engine cannot hold (an object, a module
    other than math, a function): any use of it ends the trace."""

    def __init__(self, name: str):
        self._name = name

    def _refuse(self, *args, **kwargs):
        raise _Refused(f"the function uses {self._name!r}, which is not a number")

    __getattr__ = __call__ = __getitem__ = __add__ = __radd__ = __mul__ = __rmul__ = _refuse
    __sub__ = __rsub__ = __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __bool__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = __float__ = __int__ = __index__ = __iter__ = _refuse
    # The object's own equality and spelling (`CONFIG == 3`, `f"{CONFIG}"`) are not the stand-in's.
    __eq__ = __ne__ = __hash__ = __repr__ = __str__ = __format__ = _refuse


# A guard: (where, key, value the trace read), or (where, key) where it read nothing; see
# engine_cpu.cpp's guard_holds, which checks them at every step.
Guard = tuple
_MISSING = object()


def _traced_value(value, name: str) -> Any:
    """What the traced function sees for a free name bound to `value`: numbers and strings as they are,
    the math module and known functions in traced form, and anything else opaque."""
    if type(value) in (int, float, bool, str, type(None)):
        return value
    if value is math:
        return _TRACED_MATH
    if id(value) in _TRACED_FUNCTIONS:
        return _TRACED_FUNCTIONS[id(value)]
    return _Opaque(name)


def _constant_argument(value, what: str):
    if type(value) not in (int, float, bool, str, type(None)):
        raise TraceError(f"{what} is a {type(value).__name__}, not a number or a string")
    return value


# Operations whose effect outlives the call, or which a trace cannot repeat: a function whose code has
# one is not traced, whichever path would reach it (its calls are then torch's, one per group and step).
_IMPURE_OPERATIONS = {
    "STORE_GLOBAL": "assigns a global",
    "DELETE_GLOBAL": "deletes a global",
    "STORE_ATTR": "assigns an attribute",
    "DELETE_ATTR": "deletes an attribute",
    "IMPORT_NAME": "imports",
    "IMPORT_FROM": "imports",
    "IMPORT_STAR": "imports",
    "LOAD_BUILD_CLASS": "defines a class",
    "LOAD_SUPER_ATTR": "calls super()",
    "SETUP_FINALLY": "handles exceptions",
    "SETUP_WITH": "uses a with statement",
    "SETUP_ASYNC_WITH": "uses a with statement",
    "BEFORE_WITH": "uses a with statement",
    "BEFORE_ASYNC_WITH": "uses a with statement",
    "PRINT_EXPR": "prints",
    "STORE_NAME": "assigns a name",
    "DELETE_NAME": "deletes a name",
}
_ATTRIBUTE_LOADS = ("LOAD_ATTR", "LOAD_METHOD")
_CLOSURE_STORES = ("STORE_DEREF", "DELETE_DEREF")
# What an exception handler the compiler adds does before it re-raises (3.12's inlined comprehensions,
# generators' StopIteration check): the exception goes on unchanged, so the handler changes no path.
_RERAISING_HANDLER = {
    "PUSH_EXC_INFO", "SWAP", "POP_TOP", "STORE_FAST", "LOAD_FAST", "COPY", "NOP", "CALL_INTRINSIC_1"
}


def _handler_reraises(instructions: list, target: int) -> bool:
    for instruction in instructions:
        if instruction.offset < target:
            continue
        if instruction.opname == "RERAISE":
            return True
        if instruction.opname not in _RERAISING_HANDLER:
            return False
    return False


def _check_pure(code: types.CodeType, outer_names: frozenset) -> None:
    """Refuses (TraceError) code a trace could not stand in for without a difference a user could see:
    code that changes state outside the call (a global, a nonlocal in `outer_names`, an attribute, an
    import), handles exceptions (the step's stand-in raises where an int would not, and the other way
    round), tests identity other than `is None`, or reads a dunder attribute (`__class__`, `__dict__`).
    Functions defined inside it are checked too."""
    instructions = list(dis.get_instructions(code))
    for k, instruction in enumerate(instructions):
        name, argument = instruction.opname, instruction.argval
        why = _IMPURE_OPERATIONS.get(name)
        if name in _CLOSURE_STORES and argument in outer_names:
            why = f"assigns the nonlocal variable {argument!r}"
        elif name in _ATTRIBUTE_LOADS and str(argument).startswith("_"):
            why = f"reads the attribute {argument!r}"
        elif name == "IS_OP" and not (k and _loads_none(instructions[k - 1])):
            why = "tests identity (`is`)"
        if why is not None:
            raise TraceError(f"the function {why}, which a trace cannot repeat")
    for entry in getattr(dis.Bytecode(code), "exception_entries", ()):
        if not _handler_reraises(instructions, entry.target):
            raise TraceError("the function handles exceptions, which a trace cannot repeat")
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            inner = frozenset(
                n for n in constant.co_freevars if n in outer_names and n not in code.co_cellvars
            )
            _check_pure(constant, inner)


def _loads_none(instruction) -> bool:
    return instruction.opname == "LOAD_CONST" and instruction.argval is None


def _global_names(code: types.CodeType) -> set[str]:
    """The global (or builtin) names the code and the functions defined in it look up."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname == "LOAD_GLOBAL"}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _attribute_guard(obj, name: str) -> Guard:
    return (obj, name, getattr(obj, name))


def _items_guard(mapping: dict) -> Guard:
    """A guard that holds while `mapping` has the same keys bound to the same objects."""
    return (mapping, tuple(mapping), tuple(mapping.values()))


def _item_guard(mapping: dict, key: str) -> Guard:
    return (mapping, key) if key not in mapping else (mapping, key, mapping[key])


def _traceable(fn) -> tuple[types.FunctionType, tuple, dict, list]:
    """The plain function behind `fn` (a function, or a functools.partial of one with constant
    arguments), rebuilt to see traced math and builtins, with its positional and keyword arguments
    and the guards on everything the trace read: the partial's parts, the function's code, defaults,
    globals, builtins and closure cells."""
    args: tuple = ()
    kwargs: dict = {}
    guards: list = []
    if type(fn) is functools.partial:
        guards += [_attribute_guard(fn, part) for part in ("func", "args", "keywords")]
        guards.append(_items_guard(fn.keywords))
        args = tuple(_constant_argument(a, "a partial argument") for a in fn.args)
        kwargs = {k: _constant_argument(v, f"argument {k!r}") for k, v in fn.keywords.items()}
        fn = fn.func
    if type(fn) is not types.FunctionType:
        raise TraceError(f"{type(fn).__name__} objects are not traced, only functions")
    code = fn.__code__
    _check_pure(code, frozenset(code.co_freevars))
    source_globals, source_builtins = fn.__globals__, fn.__builtins__
    if type(source_globals) is not dict or type(source_builtins) is not dict:
        raise TraceError("the function's globals or builtins are not a dict")
    guards.append(_attribute_guard(fn, "__code__"))
    if code.co_argcount + code.co_kwonlyargcount > 1:  # torch passes the step alone: others default
        guards += [_attribute_guard(fn, "__defaults__"), _attribute_guard(fn, "__kwdefaults__")]
        if fn.__kwdefaults__:
            guards.append(_items_guard(fn.__kwdefaults__))
    # Only the builtins the engine has: print(), isinstance(), str() ... end the trace (NameError).
    traced_globals: dict[str, Any] = {"__builtins__": {}}
    for name in _global_names(code):
        guards.append(_item_guard(source_globals, name))
        value = source_globals.get(name, _MISSING)
        if value is _MISSING:
            guards.append(_item_guard(source_builtins, name))
            value = source_builtins.get(name, _MISSING)
        if value is not _MISSING:
            traced_globals[name] = _traced_value(value, name)
    cells = None
    if fn.__closure__:
        cells = []
        for name, cell in zip(code.co_freevars, fn.__closure__):
            try:
                contents = cell.cell_contents
            except ValueError:
                raise TraceError(f"the free variable {name!r} is not bound yet") from None
            guards.append((cell, None, contents))
            cells.append(types.CellType(_traced_value(contents, name)))
        cells = tuple(cells)
    defaults = fn.__defaults__ and tuple(_traced_value(v, "a default argument") for v in fn.__defaults__)
    traced = types.FunctionType(code, traced_globals, fn.__name__, defaults, cells)
    traced.__kwdefaults__ = fn.__kwdefaults__ and {
        k: _traced_value(v, k) for k, v in fn.__kwdefaults__.items()
    }
    return traced, args, kwargs, guards


# Whether everything a trace read (a tuple of guards) is still the object it read.
guards_hold = _C.guards_hold


def _reachable(roots, seen: set) -> None:
    stack = list(roots)
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.args)


def _also_computing(result: Schedule, unused: list[Schedule]) -> Schedule:
    """`result`, computed after `unused` (values the function computed and dropped): where Python
    raises computing one of them, the engine fails too (and the step goes to Python)."""
    check = Schedule("not", (unused[0],))
    for node in unused[1:]:
        check = Schedule("eq", (check, Schedule("not", (node,))))
    return Schedule("where", (check, result, result))


def _path_value(result: Schedule) -> Schedule:
    """The value of the path just traced: `result`, also failing where an operation the path computed
    but dropped fails (its conditions are computed by the `where`s above it)."""
    seen: set[int] = set()
    _reachable([result, *_TRACING.decided], seen)
    unused = []
    for node in reversed(_TRACING.created):  # the last first: a node is created after its operands
        if id(node) not in seen:
            unused.append(node)
            _reachable([node], seen)
    return _also_computing(result, unused) if unused else result


def _explore(call: Callable, forced: list[bool], paths: list[int]) -> Schedule:
    """The function's value as a schedule, for the paths that begin with `forced`: where it tests a
    schedule's truth, both outcomes are explored and joined with `where`."""
    paths[0] += 1
    if paths[0] > _MAX_PATHS:
        raise TraceError(f"the function has more than {_MAX_PATHS} paths")
    _TRACING.start_path(forced)
    try:
        result = call()
    except _Branch as branch:
        if_true = _explore(call, forced + [True], paths)
        if_false = _explore(call, forced + [False], paths)
        return Schedule("where", (branch.condition, if_true, if_false))
    if not (isinstance(result, Schedule) or _is_number(result)):
        raise TraceError(f"the function returned a {type(result).__name__}, not a number")
    return _path_value(as_schedule(result))


def _trace_paths(call: Callable) -> Schedule:
    if _TRACING.active:
        raise TraceError("trace() is not reentrant")
    _TRACING.active = True
    _TRACING.operations = 0
    try:
        schedule = _explore(call, [], [0])
    except _Refused as refused:
        raise TraceError(str(refused)) from None
    except TraceError:
        raise
    except Exception as error:
        raise TraceError(f"tracing failed: {type(error).__name__}: {error}") from None
    finally:
        _TRACING.active = False
        _TRACING.start_path([])  # holds no node of the function's past the trace
    schedule._program()  # too large for the engine: refused now, not at the first step
    return schedule


def trace(fn) -> tuple[Schedule, list[Guard]]:
    """`fn(step)` as a schedule, and the guards under which it holds.

    `fn` (a function, or a functools.partial of one) is never called: a copy of it, seeing a
    symbolic step, runs once for every path through its `if`s, `and` / `or` and conditional
    expressions (at most 16, and at most 512 operations on the step over all of them). It may use
    arithmetic, comparisons, the builtins ``min``, ``max``, ``abs``, ``float``, ``int``, ``pow``,
    ``round``, ``range``, ``len``, ``sum``, ``bool``, ``any``, ``all``, ``enumerate``, ``zip`` and
    the math module's cos, sin, tan, exp, log, log2, log10, sqrt, pow, fabs, floor, ceil, trunc and
    constants, on the step and on numbers and strings bound to free names (globals, closures,
    default and partial arguments). Anything else (another object or
    builtin, a call to another function) raises TraceError, and so does code a trace could not stand
    in for: assigning a global, a nonlocal or an attribute, importing, handling exceptions, testing
    identity (see `_check_pure`). So calling `fn` has no effect a trace leaves out, and its value
    depends only on the step and on what the guards watch: the partial's parts, the function's code,
    defaults, and the globals, builtins and closure cells it reads. Where Python's arithmetic raises or
    leaves the engine's exact ints, the engine fails and the step calls `fn` itself.

    A Schedule is returned as it is, with no guards. ``min(1.0, t / 10)``, for instance, becomes
    ``where(t / 10 < 1.0, t / 10, 1.0)``.

    >>> from schedx import schedules as S
    >>> schedule, guards = S.trace(lambda t: min(1.0, t / 10))
    >>> schedule(5), schedule(50)
    (0.5, 1.0)
    """
    if isinstance(fn, Schedule):
        return fn, []
    traced, args, kwargs, guards = _traceable(fn)
    schedule = _trace_paths(lambda: traced(step(), *args, **kwargs))
    return schedule, guards


# ---------------------------------------------------------------------------------------------------
# The families people use
# ---------------------------------------------------------------------------------------------------
# Written as the step functions of transformers' schedules (optimization.py), in the same operations
# and order, and traced: their values are those functions' values, bit for bit.


def _constant_with_warmup(current_step, *, num_warmup_steps):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1.0, num_warmup_steps))
    return 1.0


def _linear_with_warmup(current_step, *, num_warmup_steps, num_training_steps):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))


def _cosine_with_warmup(current_step, *, num_warmup_steps, num_training_steps, num_cycles, min_lr_rate):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
    factor = factor * (1 - min_lr_rate) + min_lr_rate
    return max(0, factor)


def _cosine_with_hard_restarts(current_step, *, num_warmup_steps, num_training_steps, num_cycles):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(num_cycles) * progress) % 1.0))))


def _polynomial_decay_with_warmup(current_step, *, num_warmup_steps, num_training_steps, lr_end, power, lr_init):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    elif current_step > num_training_steps:
        return lr_end / lr_init
    else:
        lr_range = lr_init - lr_end
        decay_steps = num_training_steps - num_warmup_steps
        pct_remaining = 1 - (current_step - num_warmup_steps) / decay_steps
        decay = lr_range * pct_remaining**power + lr_end
        return decay / lr_init


def _inverse_sqrt(current_step, *, num_warmup_steps, timescale):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    shift = timescale - num_warmup_steps
    return 1.0 / math.sqrt((current_step + shift) / timescale)


def _warmup_stable_decay(
    current_step, *, num_warmup_steps, num_stable_steps, num_decay_steps, warmup_type, decay_type,
    min_lr_ratio, num_cycles,
):
    if current_step < num_warmup_steps:
        progress = float(current_step) / float(max(1, num_warmup_steps))
        if warmup_type == "linear":
            factor = progress
        elif warmup_type == "cosine":
            factor = 0.5 * (1.0 - math.cos(math.pi * progress))
        else:
            factor = 1.0 - math.sqrt(1.0 - progress)
        factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
        return max(0.0, factor)
    if current_step < num_warmup_steps + num_stable_steps:
        return 1.0
    if current_step < num_warmup_steps + num_stable_steps + num_decay_steps:
        progress = float(current_step - num_warmup_steps - num_stable_steps) / float(max(1, num_decay_steps))
        if decay_type == "linear":
            factor = 1.0 - progress
        elif decay_type == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
        else:
            factor = 1.0 - math.sqrt(progress)
        factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
        return max(0.0, factor)
    return min_lr_ratio


def _family(fn, *args, **settings) -> Schedule:
    """A family's step function with these settings, traced (with `args` after the step)."""
    traced = _traceable(fn)[0]
    return _trace_paths(lambda: traced(step(), *args, **settings))


def _non_negative_int(value, name: str) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def constant_with_warmup(num_warmup_steps: int) -> Schedule:
    """transformers' get_constant_schedule_with_warmup: a linear rise over the warmup, then 1.

        value = step / max(1, num_warmup_steps)   for step < num_warmup_steps, else 1

    `num_warmup_steps` is a non-negative int (ValueError otherwise).

    >>> from schedx import schedules as S
    >>> s = S.constant_with_warmup(10)
    >>> s(5), s(50)
    (0.5, 1.0)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(_constant_with_warmup, num_warmup_steps=num_warmup_steps)


def linear_with_warmup(num_warmup_steps: int, num_training_steps: int) -> Schedule:
    """transformers' get_linear_schedule_with_warmup: up over the warmup, then down to 0 linearly.

        value = step / max(1, warmup)                                    for step < warmup
        value = max(0, (training - step) / max(1, training - warmup))    after

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise; training =
    `num_training_steps`).

    >>> from schedx import schedules as S
    >>> s = S.linear_with_warmup(10, 110)
    >>> s(5), s(60), s(200)
    (0.5, 0.5, 0.0)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(_linear_with_warmup, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)


def cosine_with_warmup(num_warmup_steps: int, num_training_steps: int, num_cycles: float = 0.5) -> Schedule:
    """transformers' get_cosine_schedule_with_warmup: a linear warmup, then a cosine to 0.

        value = step / max(1, warmup)                                    for step < warmup
        value = max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * progress)))  after,
        progress = (step - warmup) / max(1, training - warmup)

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise; training =
    `num_training_steps`). The default ``num_cycles=0.5`` is half a cosine, from 1 to 0; the cosine is
    Loshchilov & Hutter's (SGDR, ICLR 2017).

    >>> from schedx import schedules as S
    >>> s = S.cosine_with_warmup(10, 110)
    >>> s(5), s(60)
    (0.5, 0.5)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(
        _cosine_with_warmup,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
        min_lr_rate=0.0,
    )


def cosine_with_hard_restarts(num_warmup_steps: int, num_training_steps: int, num_cycles: int = 1) -> Schedule:
    """transformers' get_cosine_with_hard_restarts_schedule_with_warmup: a linear warmup, then
    `num_cycles` half-cosines from 1 to 0, each restarting at 1 (SGDR's warm restarts, Loshchilov &
    Hutter, ICLR 2017), then 0.

        value = step / max(1, warmup)                                    for step < warmup
        value = max(0, 0.5 * (1 + cos(pi * ((num_cycles * progress) % 1))))   while progress < 1
        value = 0                                                        from progress = 1 on,
        progress = (step - warmup) / max(1, training - warmup)

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise; training =
    `num_training_steps`).

    >>> from schedx import schedules as S
    >>> s = S.cosine_with_hard_restarts(10, 110, num_cycles=2)
    >>> s(35), s(60), s(110)
    (0.5, 1.0, 0.0)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(
        _cosine_with_hard_restarts,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
    )


def polynomial_decay_with_warmup(
    num_warmup_steps: int, num_training_steps: int, lr_init: float, lr_end: float = 1e-7, power: float = 1.0
) -> Schedule:
    """transformers' get_polynomial_decay_schedule_with_warmup; `lr_init` is the optimizer's default
    LR there (``optimizer.defaults["lr"]``), which must be larger than `lr_end` (ValueError otherwise).

        value = step / max(1, warmup)                                           for step < warmup
        value = ((lr_init - lr_end) * (1 - (step - warmup) / (training - warmup)) ** power
                 + lr_end) / lr_init                                            up to training
        value = lr_end / lr_init                                                after

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise; training =
    `num_training_steps`).

    >>> from schedx import schedules as S
    >>> s = S.polynomial_decay_with_warmup(10, 110, lr_init=1e-3, lr_end=1e-5, power=2.0)
    >>> s(60), s(200)
    (0.2575, 0.01)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    if not lr_init > lr_end:
        raise ValueError(f"lr_end ({lr_end}) must be smaller than initial lr ({lr_init})")
    return _family(
        _polynomial_decay_with_warmup,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        lr_end=lr_end,
        power=power,
        lr_init=lr_init,
    )


def inverse_sqrt(num_warmup_steps: int, timescale: int | None = None) -> Schedule:
    """transformers' get_inverse_sqrt_schedule (timescale defaults to the warmup, or 10,000).

        value = step / max(1, warmup)                                     for step < warmup
        value = 1 / sqrt((step + timescale - warmup) / timescale)         after

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise). The inverse square root
    decay after a linear warmup is the Transformer's, Vaswani et al., "Attention Is All You Need" (2017).

    >>> from schedx import schedules as S
    >>> s = S.inverse_sqrt(100)
    >>> s(50), s(100), s(400)
    (0.5, 1.0, 0.5)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    return _family(_inverse_sqrt, num_warmup_steps=num_warmup_steps, timescale=timescale)


def warmup_stable_decay(
    num_warmup_steps: int,
    num_decay_steps: int,
    num_training_steps: int | None = None,
    num_stable_steps: int | None = None,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    min_lr_ratio: float = 0,
    num_cycles: float = 0.5,
) -> Schedule:
    """transformers' get_wsd_schedule: warmup, a plateau at 1, a decay to `min_lr_ratio`. Give
    `num_training_steps` (the plateau is what the warmup and decay leave) or `num_stable_steps`
    (exactly one: ValueError otherwise).

        warmup (step < W):      value = max(0, f_w(step / max(1, W)) * (1 - min_lr_ratio) + min_lr_ratio)
        stable (up to W + S):   value = 1
        decay (up to W + S + D): value = max(0, f_d(p) * (1 - min_lr_ratio) + min_lr_ratio),
                                p = (step - W - S) / max(1, D)
        after:                  value = min_lr_ratio

    with W, S, D the warmup, stable and decay steps; f_w(p) is p ("linear"), 0.5 * (1 - cos(pi * p))
    ("cosine") or 1 - sqrt(1 - p) ("1-sqrt"), and f_d(p) is 1 - p ("linear"),
    0.5 * (1 + cos(pi * num_cycles * 2 * p)) ("cosine") or 1 - sqrt(p) ("1-sqrt"); `warmup_type` and
    `decay_type` must be one of the three and `num_warmup_steps` a non-negative int (ValueError
    otherwise). The warmup-stable-decay schedule is from Hu et al., "MiniCPM" (2024).

    >>> from schedx import schedules as S
    >>> s = S.warmup_stable_decay(10, 20, num_training_steps=100)
    >>> s(5), s(50), s(90)
    (0.5, 1.0, 0.5)
    """
    if (num_training_steps is None) == (num_stable_steps is None):
        raise ValueError("give exactly one of num_training_steps and num_stable_steps")
    if num_stable_steps is None:
        num_stable_steps = num_training_steps - num_warmup_steps - num_decay_steps
    for name, kind in (("warmup_type", warmup_type), ("decay_type", decay_type)):
        if kind not in ("linear", "cosine", "1-sqrt"):
            raise ValueError(f"{name} must be linear, cosine or 1-sqrt, got {kind!r}")
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(
        _warmup_stable_decay,
        num_warmup_steps=num_warmup_steps,
        num_stable_steps=num_stable_steps,
        num_decay_steps=num_decay_steps,
        warmup_type=warmup_type,
        decay_type=decay_type,
        min_lr_ratio=min_lr_ratio,
        num_cycles=num_cycles,
    )


def cosine_with_min_lr(
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    min_lr: float | None = None,
    min_lr_rate: float | None = None,
    lr_init: float | None = None,
) -> Schedule:
    """transformers' get_cosine_with_min_lr_schedule_with_warmup: the cosine ends at `min_lr_rate` of the
    initial LR (or at `min_lr`, given `lr_init`, the optimizer's default LR, as transformers divides).

        value = step / max(1, warmup)                                           for step < warmup
        value = max(0, c * (1 - min_lr_rate) + min_lr_rate)                     after,
        c = 0.5 * (1 + cos(pi * num_cycles * 2 * progress)),
        progress = (step - warmup) / max(1, training - warmup)

    Give exactly one of `min_lr` and `min_lr_rate`, and `lr_init` with `min_lr`; `num_warmup_steps` is
    a non-negative int (ValueError otherwise).

    >>> from schedx import schedules as S
    >>> s = S.cosine_with_min_lr(10, 110, min_lr_rate=0.1)
    >>> s(60), s(110)
    (0.55, 0.1)
    """
    if (min_lr is None) == (min_lr_rate is None):
        raise ValueError("give exactly one of min_lr and min_lr_rate")
    if min_lr is not None:
        if lr_init is None:
            raise ValueError("min_lr needs lr_init (the optimizer's default LR) to become a rate")
        min_lr_rate = min_lr / lr_init
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(
        _cosine_with_warmup,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
        min_lr_rate=min_lr_rate,
    )


def _timm_cosine(
    t, base, *, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, warmup_t, warmup_lr_init,
    warmup_prefix, k_decay,
):
    # timm's CosineLRScheduler._get_lr for one group whose base value is `base`.
    if t < warmup_t:
        return warmup_lr_init + t * ((base - warmup_lr_init) / warmup_t)
    if warmup_prefix:
        t = t - warmup_t
    if cycle_mul != 1:
        i = math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    else:
        i = t // t_initial
        t_i = t_initial
        t_curr = t - (t_initial * i)
    gamma = cycle_decay**i
    lr_max = base * gamma
    if i < cycle_limit:
        return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr**k_decay / t_i**k_decay))
    return lr_min


def timm_cosine(
    t_initial: int,
    lr_min: float = 0.0,
    cycle_mul: float = 1.0,
    cycle_decay: float = 1.0,
    cycle_limit: int = 1,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = False,
    k_decay: float = 1.0,
) -> Schedule:
    """timm's CosineLRScheduler (without noise), per step: an absolute schedule (it mentions base_lr:
    `lr_min` and `warmup_lr_init` are LRs, each group's cosine starts from its initial LR).

        lr = warmup_lr_init + t * (base_lr - warmup_lr_init) / warmup_t              for t < warmup_t
        lr = lr_min + 0.5 * (base_lr * cycle_decay ** i - lr_min)
                    * (1 + cos(pi * t_curr ** k_decay / t_i ** k_decay))             for i < cycle_limit
        lr = lr_min                                                                  after

    where t is the step (less `warmup_t` with `warmup_prefix`), i the cycle it falls in, t_i that
    cycle's length (``t_initial * cycle_mul ** i``) and t_curr the steps into it. `t_initial` is a
    positive int and `lr_min` at least 0 (ValueError otherwise). Cosine annealing with warm restarts
    from Loshchilov & Hutter, "SGDR" (ICLR 2017), as timm's timm.scheduler.CosineLRScheduler runs it.

    >>> from schedx import schedules as S
    >>> s = S.timm_cosine(100, lr_min=1e-5, warmup_t=5, warmup_lr_init=1e-6)
    >>> s(0, base_lr=1e-3), s(50, base_lr=1e-3), s(100, base_lr=1e-3)
    (1e-06, 0.000505, 1e-05)
    """
    _positive_steps(t_initial, "t_initial")
    if lr_min < 0:
        raise ValueError(f"lr_min must be >= 0, got {lr_min}")
    settings = dict(
        t_initial=t_initial, lr_min=lr_min, cycle_mul=cycle_mul, cycle_decay=cycle_decay,
        cycle_limit=cycle_limit, warmup_t=warmup_t, warmup_lr_init=warmup_lr_init,
        warmup_prefix=warmup_prefix, k_decay=k_decay,
    )
    return _family(_timm_cosine, base_lr(), **settings)
