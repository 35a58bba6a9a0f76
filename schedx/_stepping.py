"""How schedx's schedulers step: the machinery behind the classes of lr_scheduler.py.

- the step's plumbing: the LRs as the engine reads them, torch's step run with the user's warnings,
  and whether a step must run torch's code (an overridden method torch's step calls);
- the composites' (ChainedScheduler's, SequentialLR's) entry into tensor mode;
- the trace cache: a LambdaLR's, MultiplicativeLR's or ScheduleLR's callables traced into engine
  programs (schedx/schedules' `trace`), kept in the scheduler's `_compiled` slot while the traces hold;
- the registration of schedx's classes whose plain step runs whole in the engine (`plain_step`).

lr_scheduler.py imports this module before it defines its classes: what needs them (LRScheduler and
its slot, the registered classes) is taken from it when it registers its classes, last.
"""
from __future__ import annotations

import functools
import types
import warnings
import weakref
from typing import Any, NamedTuple

from torch import Tensor
from torch import compiler as _torch_compiler
from torch.optim import lr_scheduler as _torch_module
from torch.optim import swa_utils as _torch_swa_module

from . import _engine, _tensor_mode
from . import _torch_era as _era
from . import schedules as _schedules
from ._engine import Family
from ._tensor_mode import StageSpec


def _current_lrs(optimizer) -> list[Any]:
    """`_param_groups_val_list(optimizer, "lr")`, read by the engine when the LRs are floats."""
    last_lr = _engine.collect_lrs(optimizer.param_groups)
    if last_lr is None:
        return _era.param_groups_val_list(optimizer, "lr")
    return last_lr


def _call_torch_step(step, scheduler, *args, stacklevel: int = 4) -> None:
    """torch's `step` function on `scheduler`, its warnings issued where torch's point: a warning
    torch issues for its caller (`stacklevel=2`, from torch 2.10) from the caller of schedx's step
    (`stacklevel` frames up), one that points inside torch (before 2.10) from the same line."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step(scheduler, *args)
    finally:
        for w in caught:
            if w.filename == __file__:
                warnings.warn(w.message, w.category, stacklevel=stacklevel)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, **_warning_origin(w))



def _warning_origin(w: warnings.WarningMessage) -> dict[str, Any]:
    """The module and registry a warning issued inside torch's scheduler modules is filtered with."""
    for module in (_torch_module, _torch_swa_module):
        if w.filename == module.__file__:
            return {"module": module.__name__, "registry": vars(module).setdefault("__warningregistry__", {})}
    return {}


_SCHEDX_MODULES = frozenset({"schedx.lr_scheduler", "schedx.swa_utils"})


def _engine_base(cls) -> type:
    """The schedx class whose steps `cls` inherits: the first of schedx's own in its MRO."""
    return next(c for c in cls.__mro__ if c.__module__ in _SCHEDX_MODULES)


def _runs_torch_code(scheduler) -> bool:
    """Whether a step of `scheduler` must run torch's code because a method torch's step calls is
    overridden: by its class (LRScheduler.__init_subclass__) or on the instance."""
    cls = type(scheduler)
    return cls._overrides_step_hooks or not scheduler.__dict__.keys().isdisjoint(cls._step_hooks)

def _step_each(schedulers) -> None:
    for scheduler in schedulers:
        scheduler.step()


def _step_children(step, arg) -> None:
    """A composite's children stepped one by one (`step(arg)`). Inside torch.compile, eagerly (a graph
    break): dynamo compiles the children's tensor-mode steps reached from here into graphs that lose
    their programs' writes (measured on torch 2.9.1: a SequentialLR, which is one program only from
    2.10, kept its LRs). A composite that is one program steps in the graph."""
    if _torch_compiler.is_compiling():
        _eagerly(step, arg)
    else:
        step(arg)


@_torch_compiler.disable
def _eagerly(step, arg) -> None:
    step(arg)


def _child_runs_torch_code(child) -> bool:
    """_runs_torch_code for a composite's child, whose `step` the composite calls too."""
    return _runs_torch_code(child) or "step" in child.__dict__


def _holds_tensors(last_lr) -> bool:
    """Whether a `_last_lr` just written holds tensors (then a composite may enter tensor mode)."""
    return bool(last_lr) and isinstance(last_lr[0], Tensor)


def _enter_composite(composite, composition: int, milestones: tuple[int, ...]) -> None:
    """Tensor mode for a composite as one program whose stages are its children, when every child has
    a stage (else the children keep their own programs, or torch's code). Children that entered tensor
    mode on their own during the step torch's code just ran leave it first."""
    from .lr_scheduler import LRScheduler

    children = composite._schedulers
    if any(isinstance(c, LRScheduler) and _child_runs_torch_code(c) for c in children):
        return
    # A child listed twice steps once per listing in torch, each step from the counters the one before
    # left; a program's stages read their counters before any is written.
    if len({id(c) for c in children}) != len(children):
        return
    try:
        specs = [c._tensor_stage() if isinstance(c, LRScheduler) else None for c in children]
    except _tensor_mode.STAGE_ERRORS:
        return
    if any(spec is None or spec.family == _tensor_mode.FAMILY_PLATEAU for spec in specs):
        return
    for child in children:
        _tensor_mode.leave(child)
    _tensor_mode.enter(composite, list(children), lambda: specs, composition, milestones)


class _CompiledSchedules(NamedTuple):
    """A scheduler's lambdas (or schedules) as engine programs, one per group, or None where one could
    not be traced; valid while the list holds the same objects and the traces' guards hold. (A tuple:
    the engine's plain step reads its fields by position, in this order.)

    The callables are held by weak references: a cache entry must not keep them, and through them
    (a bound method, a closure) the scheduler, alive; torch's scheduler is freed without the cache."""

    callables: tuple[weakref.ref, ...]
    programs: tuple | None
    guards: tuple
    gives_lrs: bool = False  # a schedule reads base_lr: its program gives the LR, not a factor
    retraces: int = 0  # how often the same callables were traced again after a guard failed
    exact_on_device: bool = False  # every program fails only where Python raises (schedules/_expression.py)


# LRScheduler's `_compiled` slot, read as the engine reads it (a subclass cannot shadow it); set by
# _set_compiled_slot, when lr_scheduler.py has defined LRScheduler.
_COMPILED_SLOT: types.MemberDescriptorType
# Callables whose guards failed this often (a global that changes at every step, say) are called per
# group from then on, as torch calls them: tracing them at every step would cost more.
_MAX_RETRACES = 3


def _compiled_schedules(
    scheduler, callables: list, factors_only: bool = False, on_device: bool = False
) -> tuple | None:
    """The programs of `callables` (one per group), traced once and again only after a change. With
    `factors_only` (lambdas), a schedule that gives an LR (mentions base_lr) is not compiled: torch
    would call it with the step alone, which raises. `on_device` (a tensor-mode program, which cannot
    hand a step to Python): only programs that fail only where Python raises."""
    entry = _compiled_entry(scheduler)
    if entry is None or not _still_valid(entry, callables):
        same = entry is not None and _same_objects(entry.callables, callables)
        entry = _compile_schedules(callables, entry.retraces + 1 if same else 0)
        _COMPILED_SLOT.__set__(scheduler, entry)
    if (factors_only and entry.gives_lrs) or (on_device and not entry.exact_on_device):
        return None
    return entry.programs


def _compiled_entry(scheduler) -> _CompiledSchedules | None:
    """The scheduler's traced callables; None before its first trace."""
    try:
        return _COMPILED_SLOT.__get__(scheduler)
    except AttributeError:
        return None


# Whether a trace's weak references refer to the items of the list `callables`, by identity (a
# callable's own __eq__ could call two different ones equal): the engine's check.
_same_objects = _engine.same_callables


def _still_valid(entry: _CompiledSchedules, callables: list) -> bool:
    """The engine's check (csrc/families/schedule.cpp's cached_programs): the same callables, every guard holding."""
    return _same_objects(entry.callables, callables) and _schedules.guards_hold(entry.guards)


def _compile_schedules(callables: list, retraces: int = 0) -> _CompiledSchedules:
    try:
        refs = tuple(weakref.ref(fn) for fn in callables)
    except TypeError:
        # A callable without weak references is not traced: an entry that never holds, so each step
        # tries again here (a failed weakref.ref, cheap) and calls the callables, as torch does.
        return _CompiledSchedules((), None, ())
    if retraces > _MAX_RETRACES:
        return _CompiledSchedules(refs, None, (), False, retraces)
    traced: dict[int, tuple] = {}
    guards: list = []
    exact_on_device = True
    for fn in callables:
        if id(fn) in traced:
            continue
        try:
            schedule, fn_guards = _schedules.trace(fn)
            program = schedule._program()
        except (_schedules.TraceError, ValueError, TypeError):
            return _CompiledSchedules(refs, None, (), False, retraces)
        traced[id(fn)] = program
        guards += fn_guards
        exact_on_device = exact_on_device and _schedules.exact_on_device(schedule)
    programs = tuple(traced[id(fn)] for fn in callables)
    gives_lrs = any(p[2] for p in traced.values())
    return _CompiledSchedules(refs, programs, tuple(guards), gives_lrs, retraces, exact_on_device)


def _schedule_stage(scheduler, callables: str, factors_only: bool, flags: int = 0) -> StageSpec | None:
    """A Schedule stage: every group's factor from one of at most four compiled schedules of the
    scheduler's list `callables` (its lr_lambdas or schedules), run while they stay as traced."""
    programs = _compiled_schedules(scheduler, getattr(scheduler, callables), factors_only, on_device=True)
    if programs is None:
        return None
    distinct = list({id(p): p for p in programs}.values())
    if len(distinct) > _tensor_mode.MAX_SCHEDULES or any(p[2] for p in distinct):
        return None
    position = {id(p): k for k, p in enumerate(distinct)}
    return StageSpec(
        _tensor_mode.FAMILY_SCHEDULE,
        flags=flags,
        rows=(scheduler.base_lrs, [position[id(p)] for p in programs]),
        schedules=tuple(distinct),
        still_valid=functools.partial(_still_traced, callables),
    )


def _still_traced(callables: str, scheduler) -> bool:
    """Whether the scheduler's callables are still those traced, with every guard of their traces
    holding. A tensor-mode program runs them only then; else torch's code runs the step and the next
    one traces again (or, past the retrace cap, calls them)."""
    entry = _compiled_entry(scheduler)
    return entry is not None and _still_valid(entry, getattr(scheduler, callables))


def _steps_plainly(cls) -> bool:
    """Whether `step()` of a scheduler of class `cls` is exactly its StepPlan's recursive rule and its
    counters: no step() or get_lr() of its own, not in tensor mode."""
    from .lr_scheduler import _StepPlanScheduler

    return (
        issubclass(cls, _StepPlanScheduler)
        and cls.step is _StepPlanScheduler.step
        # CosineAnnealingWarmRestarts shares the engine's step but has its own bookkeeping.
        and cls._python_step is _StepPlanScheduler._python_step
        and cls._fused_lr is _StepPlanScheduler._fused_lr
    )


class _PlainStepClasses(dict):
    """`_steps_plainly`, memoized by class (user subclasses included)."""

    def __missing__(self, cls):
        self[cls] = _steps_plainly(cls)
        return self[cls]


_PLAIN_STEP = _PlainStepClasses()


def _plain_step_hooks(cls) -> tuple[str, ...]:
    """The `_step_hooks` a plain step (no epoch, so no closed form) calls, which the engine's plain
    step looks up in the instance's __dict__."""
    return tuple(name for name in cls._step_hooks if name != "_get_closed_form_lr")


class PlainStep(NamedTuple):
    """How a class of schedx's runs its plain step whole in the engine: its family (csrc/rules/kinds.h,
    one csrc/families/ file each) and what the family reads beyond its usual attributes: the names of
    its settings (a Plan class's default to its `_settings`; a Schedule class's name the attribute
    holding its callables) and `extra` (MultiStepLR's Counter type, CyclicLR's built-in scale
    functions, SWALR's anneal functions; a Schedule class's (factors only: a lambda, from the base LR)).
    `needs` names the rules of torch's the family's step takes (_torch_era.ENGINE_FOLLOWS): under a
    torch that does not follow one of them, the class steps in Python."""

    family: Family
    setting_names: tuple[str, ...] | None = None
    extra: Any = None
    needs: tuple[str, ...] = ()


def _set_compiled_slot(base: type) -> None:
    """LRScheduler's `_compiled` slot, for the trace cache and the engine (lr_scheduler.py, once)."""
    global _COMPILED_SLOT
    _COMPILED_SLOT = base.__dict__["_compiled"]


def _register_plain_class(cls) -> None:
    """Registers a class of schedx's that declares its `_plain_step` (LRScheduler.__init_subclass__):
    its instances step through its family's plain step in the engine (csrc/families/), which reads and
    writes their __dict__ directly (none of these classes has a property or a __setattr__ for the
    attributes a step touches). A user's subclass declares none and is not registered."""
    plain = cls.__dict__["_plain_step"]
    if not all(_era.ENGINE_FOLLOWS[rule] for rule in plain.needs):
        return
    kind = cls._kind if plain.family == Family.Plan else None
    setting_names = plain.setting_names
    if setting_names is None:
        setting_names = getattr(cls, "_settings", ())
    extra = plain.extra
    if plain.family == Family.Schedule:
        # Their traced programs, from the `_compiled` slot as _compiled_schedules gives them.
        extra = (_COMPILED_SLOT, *extra)
    _engine.register_plain_class(cls, plain.family, kind, setting_names, extra, _plain_step_hooks(cls))
