"""The tracer of schedx.schedules: a plain function of the step (a LambdaLR lambda) turned into a
:class:`Schedule` by running a copy of it on the symbolic step, once per path, with the guards under
which the schedule stands for the function.
"""
from __future__ import annotations

import builtins
import dis
import functools
import math
import operator
import sys
import types
from typing import Any, Callable

from .._engine import _C
from ._expression import _TRACING, Schedule, _Branch, _is_number, _Refused, _unary, as_schedule, step
from ._primitives import log, where


class TraceError(ValueError):
    """A function could not be turned into a schedule (see :func:`trace`); a ValueError.

    >>> from schedx import schedules as S
    >>> S.trace(lambda t: print(t))
    Traceback (most recent call last):
    ...
    schedx.schedules.TraceError: ...
    """


_MAX_PATHS = 16  # transformers and timm schedules take at most 7


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
# csrc/families/schedule.cpp's guard_holds, which checks them at every step.
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
