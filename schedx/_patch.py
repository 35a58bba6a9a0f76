"""schedx where a training stack builds torch's schedulers: patch() / unpatch() / patched() rebind
torch's scheduler names to schedx's classes, and from_torch() converts a live torch scheduler.

What patch() rebinds, and why not more: the concrete classes (`torch.optim.lr_scheduler.StepLR`, ...,
`torch.optim.swa_utils.SWALR`), in torch's modules and in every loaded module that imported one of
them by name (transformers' `from torch.optim.lr_scheduler import LambdaLR`). Each name is bound to a
class of this module's (a "patched name", `_PatchedName`) that

- builds schedx's class when called (`type(torch_lr.StepLR(...)) is schedx.StepLR`);
- answers `isinstance` / `issubclass` exactly as torch's original class does, so a scheduler torch
  built before the patch still passes `isinstance(s, torch.optim.lr_scheduler.StepLR)`;
- is a subclass of schedx's class, so a class written against torch's name while patched is a schedx
  subclass, and has schedx's constructor signature (torch's).

The base classes `LRScheduler` and `_LRScheduler` are not rebound: every scheduler, torch's or schedx's,
is already an instance of torch's, and a user's subclass of torch's base has its own get_lr, which
would gain nothing from schedx's.

schedx itself holds torch's classes as they were at its import (lr_scheduler.py's `_torch`), so
nothing it computes depends on whether torch's module is patched.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import sys
import threading
import types
from collections.abc import Iterator

from . import lr_scheduler as _schedx_lr
from . import swa_utils as _schedx_swa

__all__ = ["from_torch", "is_patched", "patch", "patched", "unpatch"]


# torch's concrete scheduler classes as schedx saw them at import, and schedx's class for each.
_SCHEDX_BY_TORCH: dict[type, type] = {
    **{
        getattr(_schedx_lr._torch, name): getattr(_schedx_lr, name)
        for name in _schedx_lr._torch.__all__
        if name != "LRScheduler" and isinstance(getattr(_schedx_lr._torch, name), type)
    },
    _schedx_swa._torch_swa.SWALR: _schedx_swa.SWALR,
}


class _PatchedName(type):
    """The metaclass of the classes patch() binds to torch's names (see the module's docstring).

    A patched name is marked by `_torch_class` in its own __dict__; a user's subclass of one is an
    ordinary schedx subclass and behaves as any class does."""

    def __call__(cls, *args, **kwargs):
        schedx_class = cls.__dict__.get("_schedx_class")
        if schedx_class is not None:
            return schedx_class(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def __instancecheck__(cls, instance) -> bool:
        torch_class = cls.__dict__.get("_torch_class")
        if torch_class is not None:
            return isinstance(instance, torch_class)
        return super().__instancecheck__(instance)

    def __subclasscheck__(cls, subclass) -> bool:
        torch_class = cls.__dict__.get("_torch_class")
        if torch_class is not None:
            return issubclass(subclass, torch_class)
        return super().__subclasscheck__(subclass)

    @property
    def __signature__(cls) -> inspect.Signature:
        # inspect.signature would otherwise report this metaclass's __call__ (*args, **kwargs), for a
        # patched name and for a user's subclass of one alike.
        schedx_class = cls.__dict__.get("_schedx_class")
        if schedx_class is not None:
            return inspect.signature(schedx_class)
        init = inspect.signature(cls.__init__)
        return init.replace(parameters=list(init.parameters.values())[1:])


def _patched_name(torch_class: type, schedx_class: type) -> type:
    return _PatchedName(
        torch_class.__name__,
        (schedx_class,),
        {
            "__module__": torch_class.__module__,
            "__qualname__": torch_class.__qualname__,
            "__doc__": schedx_class.__doc__,
            "_torch_class": torch_class,
            "_schedx_class": schedx_class,
        },
    )


# One patched name per torch class, made once: a name keeps its identity across patch cycles.
_PATCHED_BY_TORCH = {t: _patched_name(t, s) for t, s in _SCHEDX_BY_TORCH.items()}
_TORCH_BY_PATCHED = {p: t for t, p in _PATCHED_BY_TORCH.items()}
_lock = threading.Lock()
_active = False


def _rebind(replacements: dict[type, type]) -> None:
    """Every loaded module's global bound to a key of `replacements` is bound to its value: torch's
    modules (schedx imported both), and modules that imported a name from them (`from
    torch.optim.lr_scheduler import X`). Keyed by id: a module's globals are not all hashable."""
    by_id = {id(old): (old, new) for old, new in replacements.items()}
    for module in list(sys.modules.values()):
        if not isinstance(module, types.ModuleType):
            continue
        namespace = module.__dict__
        for name, value in list(namespace.items()):
            pair = by_id.get(id(value))
            if pair is not None and pair[0] is value:
                namespace[name] = pair[1]


def patch() -> None:
    """From this call on, schedulers built through `torch.optim.lr_scheduler` or
    `torch.optim.swa_utils` (and through names imported from them, as transformers' get_scheduler
    does) are schedx's.

    `isinstance` and `issubclass` against torch's names answer as without the patch, for schedulers
    built before or after it, by torch or by schedx. Patching again is harmless; :func:`unpatch` puts
    torch's classes back.

    >>> import torch, schedx
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> with schedx.patched():
    ...     scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    >>> type(scheduler) is schedx.StepLR, isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    (True, True)
    """
    global _active
    with _lock:
        _rebind(_PATCHED_BY_TORCH)
        _active = True


def unpatch() -> None:
    """Puts torch's classes back wherever patch() bound schedx's (modules imported while patched
    included). Schedulers built while patched stay schedx's. Harmless when not patched."""
    global _active
    with _lock:
        _rebind(_TORCH_BY_PATCHED)
        _active = False


def is_patched() -> bool:
    """Whether patch() is in effect."""
    return _active


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """patch() for the `with` block; on leaving it, the state it found (patched or not) is restored."""
    was_patched = _active
    patch()
    try:
        yield
    finally:
        if not was_patched:
            unpatch()


def from_torch(scheduler):
    """The schedx scheduler equivalent to a live torch `scheduler`, on the same optimizer and with the
    same state: from here on, its steps, `state_dict()` and `get_last_lr()` are what torch's would
    have given. Composites (SequentialLR, ChainedScheduler) get their children converted. A scheduler
    of schedx's comes back as it is.

    The torch scheduler is left as it was and shares no mutable state with the new one; step the
    returned scheduler from then on (stepping both would step the LRs twice).

    Only torch's own sixteen classes convert. Anything else raises TypeError saying why: a subclass
    of one (its methods, get_lr included, are its author's, which schedx cannot take over; define it
    on schedx's class instead, where they are honoured), or an object that is not a torch scheduler.

    >>> import torch, schedx
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> torch_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.9 ** e)
    >>> scheduler = schedx.from_torch(torch_scheduler)
    >>> type(scheduler) is schedx.LambdaLR, scheduler.optimizer is optimizer
    (True, True)
    """
    return _converted(scheduler, {})


def _converted(scheduler, done: dict[int, object]):
    """from_torch, with the schedulers already converted by id (a child shared by two composites is
    converted once)."""
    if isinstance(scheduler, _schedx_lr.LRScheduler):
        return scheduler
    if id(scheduler) in done:
        return done[id(scheduler)]
    schedx_class = _SCHEDX_BY_TORCH.get(type(scheduler))
    if schedx_class is None:
        raise TypeError(_unconvertible_reason(scheduler))
    converted = schedx_class.__new__(schedx_class)
    state = {name: _unshared(value, scheduler, converted) for name, value in vars(scheduler).items()}
    if "_schedulers" in state:
        state["_schedulers"] = [_converted(child, done) for child in state["_schedulers"]]
    converted.__dict__.update(state)
    done[id(scheduler)] = converted
    return converted


def _unshared(value, scheduler, converted):
    """An attribute of `scheduler` as `converted` holds it: its own copy of a list, dict or set (an
    in-place edit of one, base_lrs[0] = ..., must not reach the other; the elements, floats, tensors
    and lambdas, are shared, as torch's load_state_dict shares them), and a method bound to
    `scheduler` (an overridden get_lr set on the instance) bound to `converted` instead."""
    if isinstance(value, (list, dict, set)):
        return copy.copy(value)
    if isinstance(value, types.MethodType) and value.__self__ is scheduler:
        return types.MethodType(value.__func__, converted)
    return value


def _unconvertible_reason(scheduler) -> str:
    cls = type(scheduler)
    torch_base = next((c for c in cls.__mro__ if c in _SCHEDX_BY_TORCH), None)
    if torch_base is None:
        return (
            f"schedx.from_torch converts torch's learning-rate schedulers; "
            f"{cls.__module__}.{cls.__qualname__} is not one of torch's sixteen classes"
        )
    return (
        f"schedx.from_torch converts torch's own classes; {cls.__module__}.{cls.__qualname__} is a "
        f"subclass of torch.optim.{torch_base.__module__.rsplit('.', 1)[-1]}.{torch_base.__name__}, "
        f"whose methods (get_lr included) schedx cannot take over: derive it from "
        f"schedx.{torch_base.__name__} instead, which calls them as torch does"
    )
