"""The expression language of schedx.schedules: :class:`Schedule` (an expression in the step), its
two variables (:func:`step`, :func:`base_lr`), its operations with Python's semantics and the units of
each result (a factor or an LR), its evaluation in Python, and its compiler to csrc/expr.h's stack code.
The state of a running trace is here too (_tracer.py runs the trace): while a function is traced, a
Schedule's operations report to it.
"""
from __future__ import annotations

import builtins
import math
import operator
import re
import struct
import threading

from .. import _engine

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


# ---------------------------------------------------------------------------------------------------
# The running trace (_tracer.py runs a function on the symbolic step; a Schedule's operations report
# here while it does)
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
# Each operation on the symbolic step costs tens of times a float operation: a trace stops after this
# many, over all paths (about 2 ms; transformers' schedules take a few dozen).
_MAX_TRACED_OPERATIONS = 512
