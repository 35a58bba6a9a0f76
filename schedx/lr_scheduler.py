r"""torch.optim.lr_scheduler, computed by schedx's fused engine.

Each class subclasses torch's class of the same name, so construction, validation, attributes,
`get_lr()`, `_get_closed_form_lr()`, `state_dict()` and warnings are torch's own. Only the step's
compute path differs: instead of a Python loop over parameter groups, one call into the compiled
engine (csrc/) computes every group's new learning rate (and momentum / betas) and writes it.

The classes appear in torch's order, so the two files can be read side by side.

For the classes registered at the end of this file, a plain step (past the first, no epoch, float
LRs) runs whole in the engine: their `step` is the engine's method, which advances the counters,
writes the groups and sets `_last_lr` in the scheduler's `__dict__`; every other step runs the
class's `_python_step`, which reads as torch's `step()` does.

LRs that are not Python floats or ints (tensors, numpy float32, ...) and inputs on which Python's
arithmetic would raise are handed to torch's own code for that step (`_reference_lr`): the result, or
the exception, is then torch's by construction, and the optimizer is never left half-updated.

When every group's LR is a tensor, a scheduler whose class can describe itself as a stage of a
program (`_tensor_stage`) moves to tensor mode after such a step (schedx/_tensor_mode.py): from then on
its step is one engine call over the LR tensors, one kernel launch for CUDA tensors.

The machinery the classes share (the step's plumbing, the trace cache of traced lambdas, the
registration with the engine) is schedx/_stepping.py.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import operator
import types
import warnings
from bisect import bisect_right
from collections import Counter
from typing import Any

from torch.optim import lr_scheduler as _torch_module
from torch.optim.lr_scheduler import (
    EPOCH_DEPRECATION_WARNING,
    _enable_get_lr_call,
    _warn_get_lr_called_within_step,
)

from . import _engine, _tensor_mode
from . import _torch_era as _era
from . import schedules as _schedules
from ._engine import Family, Kind
from ._stepping import (
    _PLAIN_STEP,
    PlainStep,
    _call_torch_step,
    _child_runs_torch_code,
    _compiled_schedules,
    _current_lrs,
    _engine_base,
    _enter_composite,
    _holds_tensors,
    _register_plain_class,
    _set_compiled_slot,
    _runs_torch_code,
    _schedule_stage,
    _step_children,
    _step_each,
)
from ._tensor_mode import StageSpec

# torch's scheduler module as it was when schedx was imported: schedx's classes derive from and call
# torch's own, whatever is rebound in torch's module later (a user's `torch_lr.SequentialLR = ...`
# made schedx's SequentialLR call itself, a RecursionError).
_torch = types.SimpleNamespace(**vars(_torch_module))

__all__ = [*_torch.__all__, "ScheduleLR"]


class LRScheduler(_torch.LRScheduler):
    r"""torch's :class:`~torch.optim.lr_scheduler.LRScheduler` with a fused step.

    Subclasses provide :meth:`_fused_lr` (and :meth:`_fused_closed_form_lr` where torch has a closed
    form): one engine call that writes every group's LR and returns the new ``_last_lr``, or ``None``
    when torch's own ``get_lr()`` must run this step. A user subclass that only implements
    ``get_lr()`` behaves exactly as it would under torch.
    """

    # A LambdaLR's, MultiplicativeLR's or ScheduleLR's traced callables (a _CompiledSchedules). A slot:
    # only the scheduler holds it, and its guards hold what the trace read, which can lead back to the
    # scheduler (a default argument, a closure): a cycle the collector frees, as it frees torch's.
    __slots__ = ("_compiled",)

    # Attributes besides the counters that a program updates in tensor mode.
    _tensor_state_names: tuple[str, ...] = ()
    # True on the tensor-mode subclasses (schedx/_tensor_mode.py).
    _in_tensor_mode = False
    # The methods torch's step() calls on the scheduler. One overridden anywhere (a subclass, a mixin,
    # the instance) is what torch's step calls, so the step runs torch's code (_runs_torch_code).
    _step_hooks: tuple[str, ...] = ("get_lr", "_update_lr", "_get_closed_form_lr")
    # True on a user's class that overrides one of `_step_hooks`.
    _overrides_step_hooks = False
    # Declared by each class of schedx's whose plain step runs whole in the engine: its family and
    # what the family reads (_stepping.PlainStep); registered when the class is created.
    _plain_step: PlainStep | None = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # A user's class overriding a method torch's step calls (its own get_lr(), a mixin's, a
        # ReduceLROnPlateau._reduce_lr that logs) gets it called, as under torch: its steps are
        # torch's code.
        base = _engine_base(cls)
        if base is not cls and any(
            getattr(cls, name, None) is not getattr(base, name, None) for name in base._step_hooks
        ):
            cls._overrides_step_hooks = True
            cls._fused_lr = LRScheduler._fused_lr
            cls._fused_closed_form_lr = LRScheduler._fused_closed_form_lr
            cls._tensor_stage = LRScheduler._tensor_stage
        if "_plain_step" in cls.__dict__:
            _register_plain_class(cls)

    def __getstate__(self):
        # What pickling and copy see of torch's scheduler, its attributes alone: a copy traces again.
        return self.__dict__

    def step(self, epoch: int | None = None) -> None:
        # torch's own step() warns on the first call and takes the deprecated `epoch` path; every other
        # step is torch's `_step_count += 1; _update_lr()`, inlined.
        if self._in_tensor_mode and _tensor_mode.tensor_step(self, epoch):
            return
        if epoch is not None or self._step_count == 1 or _runs_torch_code(self):
            return self._torch_step(epoch)
        self._step_count += 1
        # torch's get_lr() call leaves this flag False in the instance dict, and so in state_dict(),
        # even when the epoch's increment raises (torch increments inside the call's `with`).
        self._get_lr_called_within_step = False
        self.last_epoch += 1
        last_lr = self._fused_lr()
        if last_lr is None:
            self._tensor_or_reference_lr(False)
        else:
            self._last_lr = last_lr

    def _torch_step(self, epoch: int | None) -> None:
        _call_torch_step(_torch.LRScheduler.step, self, epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        self._get_lr_called_within_step = False
        if epoch is None:
            self.last_epoch += 1
            closed_form = False
        else:
            self.last_epoch = epoch
            closed_form = hasattr(self, "_get_closed_form_lr")
        self._apply_lr(closed_form)

    def _apply_lr(self, closed_form: bool) -> None:
        if _runs_torch_code(self):
            self._last_lr = self._reference_lr(closed_form)
            return
        last_lr = self._fused_closed_form_lr() if closed_form else self._fused_lr()
        if last_lr is None:
            self._tensor_or_reference_lr(closed_form)
        else:
            self._last_lr = last_lr

    def _fused_lr(self) -> list[Any] | None:
        return None

    def _fused_closed_form_lr(self) -> list[Any] | None:
        return None

    def _reference_lr(self, closed_form: bool) -> list[Any]:
        """torch's own step: get_lr() (or the closed form) in Python, written group by group."""
        with _enable_get_lr_call(self):
            values = self._get_closed_form_lr() if closed_form else self.get_lr()
        return self._write_lrs(values)

    def _write_lrs(self, values) -> list[Any]:
        for param_group, lr in _era.zip_groups(self.optimizer.param_groups, values):
            self._write_group_lr(param_group, "lr", lr)
        return _era.param_groups_val_list(self.optimizer, "lr")

    # How torch's step writes a group's LR (torch's `_update_param_group_val`).
    _write_group_lr = staticmethod(_era.update_param_group_val)

    def _keeps_lrs(self) -> bool:
        """Whether torch's get_lr() keeps the LRs at this step as at the construction step (the engine
        asks it of a scheduler it reads through its attributes)."""
        return _era.keeps_lrs(self)

    def _tensor_stage(self) -> StageSpec | None:
        """This scheduler as a stage of a tensor-mode program, or None when it has none (its steps
        then stay torch's own)."""
        return None

    def _tensor_stages(self) -> list[StageSpec | None]:
        return [self._tensor_stage()]

    def _tensor_or_reference_lr(self, closed_form: bool) -> None:
        """This step's LRs when they are not all floats, the counters already advanced: computed by a
        tensor-mode program when the LRs are tensors and the schedule has a stage, else by torch's own
        code. The scheduler stays in tensor mode, except after its construction step (torch's
        constructors set attributes after it, and a composite may undo it)."""
        program = _tensor_mode.enter(self, [self], self._tensor_stages)
        if program is not None:
            is_initial = self._keeps_lrs()
            mode = _tensor_mode.AT_CURRENT_CLOSED_FORM if closed_form else _tensor_mode.AT_CURRENT
            computed = program.run(mode, is_initial)
            if computed and not is_initial:
                return
            _tensor_mode.leave(self)
            if computed:
                return
        # No program, or one that could not compute this step (and wrote nothing): torch's code, which
        # raises torch's error where the program stopped.
        self._last_lr = self._reference_lr(closed_form)


_set_compiled_slot(LRScheduler)


class _LRScheduler(LRScheduler, _torch._LRScheduler):
    pass


class _StepPlanScheduler(LRScheduler):
    """A scheduler whose rule is a StepPlan of csrc/formulas.h.

    `_kind` selects the rule; `_settings` names, in the order csrc/kinds.h lists them, the attributes
    the rule reads. They are read at every step, so an edit between steps counts, as in torch.
    `_setting_values(scheduler)` and `_closed_form_setting_values(scheduler)` return them; a class
    whose settings are not plain attributes defines those two functions instead.
    """

    _kind: Kind
    _settings: tuple[str, ...]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "_settings" in cls.__dict__:
            cls._setting_values = operator.attrgetter(*cls._settings)
            cls._closed_form_setting_values = cls._setting_values
        # A subclass overriding a method torch's step calls (see LRScheduler) steps through torch's
        # code, unless it has a step of its own (CosineAnnealingWarmRestarts' _python_step included).
        if (
            cls._fused_lr is not _StepPlanScheduler._fused_lr
            and cls.step is _StepPlanScheduler.step
            and cls._python_step is _StepPlanScheduler._python_step
        ):
            cls.step = LRScheduler.step

    # The engine's step (csrc/py/step.cpp's fused_step): for schedx's own classes a plain step runs
    # there whole, with no Python frame; every other step runs _python_step.
    step = _engine.step_method

    def _python_step(self, epoch: int | None = None) -> None:
        # LRScheduler.step with _fused_lr() inlined.
        if self._in_tensor_mode and _tensor_mode.tensor_step(self, epoch):
            return
        if epoch is not None or self._step_count == 1 or _runs_torch_code(self):
            return self._torch_step(epoch)
        self._step_count += 1
        self._get_lr_called_within_step = False
        self.last_epoch += 1
        last_lr = _engine.plan_get_lr(self)
        if last_lr is None:
            self._tensor_or_reference_lr(False)
        else:
            self._last_lr = last_lr

    # The engine reads the rule's inputs from the scheduler's attributes (csrc/families/plan.cpp).
    def _fused_lr(self):
        return _engine.plan_get_lr(self)

    def _fused_closed_form_lr(self):
        return _engine.plan_closed_form_lr(self)

    def _tensor_stage(self):
        params = self._tensor_params()
        if params is None:
            return None
        return StageSpec(
            _tensor_mode.FAMILY_PLAN,
            kind=self._kind,
            flags=self._tensor_flags(),
            params=params,
            rows=(self.base_lrs,),
            state_names=self._tensor_state_names,
        )

    def _tensor_flags(self) -> int:
        return _tensor_mode.HAS_CLOSED_FORM if hasattr(self, "_get_closed_form_lr") else 0

    def _tensor_params(self) -> tuple[float, ...] | None:
        """The settings kinds.h lists, as the program reads them."""
        values = self._setting_values(self)
        return _tensor_mode.reals(values if isinstance(values, tuple) else (values,))


def _call_lambdas_at(scheduler, epoch: int) -> None:
    """Each lambda at `epoch`, for the error Python raises where a compiled one failed (tensor mode)."""
    for lmbda in scheduler.lr_lambdas:
        lmbda(epoch)


class LambdaLR(LRScheduler, _torch.LambdaLR):
    """:class:`torch.optim.lr_scheduler.LambdaLR`. A lambda that is only arithmetic on the step
    (``lambda e: 0.95 ** e``, ``lambda e: min(1.0, (e + 1) / 100)``, transformers' schedule functions)
    is traced once into an engine schedule (:func:`schedx.schedules.trace`) and is not called per step;
    any other lambda is called per group, as torch does. The values are the same either way."""

    # With traced lambdas, a plain step runs whole in the engine (see _StepPlanScheduler.step); any
    # other runs LRScheduler.step.
    step = _engine.step_method
    _python_step = LRScheduler.step
    _plain_step = PlainStep(Family.Schedule, ("lr_lambdas",), (True, True))

    def _fused_lr(self):
        programs = _compiled_schedules(self, self.lr_lambdas, factors_only=True)
        if programs is not None:
            # None (tensor LRs, or a step the engine leaves to Python): a tensor-mode program, or
            # torch's get_lr() calling the lambdas.
            return _engine.schedule_step(
                self.optimizer.param_groups, self.base_lrs, programs, self.last_epoch, True
            )
        factors = [lmbda(self.last_epoch) for lmbda in self.lr_lambdas]
        last_lr = _engine.scale_by_factors(
            self.optimizer.param_groups, self.base_lrs, factors, True
        )
        if last_lr is None:
            last_lr = self._write_lrs(
                [base_lr * f for f, base_lr in _era.zip_groups(factors, self.base_lrs)]
            )
        return last_lr

    def _tensor_stage(self):
        return _schedule_stage(self, "lr_lambdas", factors_only=True)

    _raise_schedule_error = _call_lambdas_at


class MultiplicativeLR(LRScheduler, _torch.MultiplicativeLR):
    """:class:`torch.optim.lr_scheduler.MultiplicativeLR`; lambdas that are arithmetic on the step are
    traced into engine schedules, as LambdaLR's are; others are called per group."""

    # As LambdaLR's.
    step = _engine.step_method
    _python_step = LRScheduler.step
    _plain_step = PlainStep(Family.Schedule, ("lr_lambdas",), (True, False), needs=("is_initial",))

    def _fused_lr(self):
        groups = self.optimizer.param_groups
        if self._keeps_lrs():
            return _engine.collect_lrs(groups)
        programs = _compiled_schedules(self, self.lr_lambdas, factors_only=True)
        if programs is not None:
            return _engine.schedule_step(groups, None, programs, self.last_epoch, False)
        factors = [lmbda(self.last_epoch) for lmbda in self.lr_lambdas]
        last_lr = _engine.scale_by_factors(groups, None, factors, False)
        if last_lr is None:
            last_lr = self._write_lrs(
                [group["lr"] * f for f, group in _era.zip_groups(factors, groups)]
            )
        return last_lr

    def _tensor_stage(self):
        return _schedule_stage(self, "lr_lambdas", factors_only=True, flags=_tensor_mode.SCALES_LR)

    _raise_schedule_error = _call_lambdas_at

    def _keeps_lrs(self) -> bool:
        return _era.multiplicative_keeps_lrs(self)


class StepLR(_StepPlanScheduler, _torch.StepLR):
    """:class:`torch.optim.lr_scheduler.StepLR`, fused."""

    _kind = Kind.StepLR
    _settings = ("step_size", "gamma")
    _plain_step = PlainStep(Family.Plan)


class MultiStepLR(_StepPlanScheduler, _torch.MultiStepLR):
    """:class:`torch.optim.lr_scheduler.MultiStepLR`, fused."""

    _kind = Kind.MultiStepLR
    # Its first setting is its Counter's count at the new epoch (_setting_values).
    _plain_step = PlainStep(Family.Plan, ("milestones", "gamma"), Counter)

    @staticmethod
    def _setting_values(scheduler):
        # torch's order: the membership test first, then the lookup.
        epoch, milestones = scheduler.last_epoch, scheduler.milestones
        return (milestones[epoch] if epoch in milestones else 0), scheduler.gamma

    @staticmethod
    def _closed_form_setting_values(scheduler):
        passed = bisect_right(sorted(scheduler.milestones.elements()), scheduler.last_epoch)
        return passed, scheduler.gamma

    def _tensor_stage(self):
        # The program counts the milestones itself, from its step counter.
        stage = super()._tensor_stage()
        milestones = _tensor_mode.reals(sorted(self.milestones.elements()))
        if stage is None or milestones is None or len(milestones) > _tensor_mode.MAX_MILESTONES:
            return None
        return dataclasses.replace(stage, milestones=milestones)


class ConstantLR(_StepPlanScheduler, _torch.ConstantLR):
    """:class:`torch.optim.lr_scheduler.ConstantLR`, fused."""

    _kind = Kind.ConstantLR
    _settings = ("factor", "total_iters")
    _plain_step = PlainStep(Family.Plan)


class LinearLR(_StepPlanScheduler, _torch.LinearLR):
    """:class:`torch.optim.lr_scheduler.LinearLR`, fused."""

    _kind = Kind.LinearLR
    _settings = ("start_factor", "end_factor", "total_iters")
    _plain_step = PlainStep(Family.Plan, needs=("is_initial",))


class ExponentialLR(_StepPlanScheduler, _torch.ExponentialLR):
    """:class:`torch.optim.lr_scheduler.ExponentialLR`, fused."""

    _kind = Kind.ExponentialLR
    _settings = ("gamma",)
    _plain_step = PlainStep(Family.Plan, needs=("is_initial",))


class SequentialLR(LRScheduler, _torch.SequentialLR):
    """:class:`torch.optim.lr_scheduler.SequentialLR`; each child steps through its own engine path,
    and with tensor LRs the whole sequence is one program."""

    # Between milestones, a current child of schedx's own StepPlan classes: the whole step in the
    # engine (see _StepPlanScheduler.step); any other step runs _python_step.
    step = _engine.chain_step_method
    # torch's step() calls only its children's methods (step, _update_lr, get_last_lr).
    _step_hooks = ()
    _plain_step = PlainStep(Family.Sequence)

    def _python_step(self, *args, **kwargs) -> None:
        if args or kwargs:
            # torch's step() takes no argument: its TypeError (a SequentialLR child of a SequentialLR
            # gets one before torch 2.9, whose hand-over is `child.step(0)`).
            return _torch.SequentialLR.step(self, *args, **kwargs)
        if self._in_tensor_mode and _tensor_mode.tensor_step(self):
            return
        _step_children(_torch.SequentialLR.step, self)
        # (Where this torch's SequentialLR is not one program, its children keep their own.)
        if (
            _era.SEQUENTIAL_PROGRAM
            and _holds_tensors(self._last_lr)
            and all(type(m) is int for m in self._milestones)
        ):
            _enter_composite(self, _tensor_mode.SEQUENTIAL, tuple(self._milestones))


class PolynomialLR(_StepPlanScheduler, _torch.PolynomialLR):
    """:class:`torch.optim.lr_scheduler.PolynomialLR`, fused."""

    _kind = Kind.PolynomialLR
    _settings = ("total_iters", "power")
    _plain_step = PlainStep(Family.Plan, needs=("is_initial",))


class CosineAnnealingLR(_StepPlanScheduler, _torch.CosineAnnealingLR):
    """:class:`torch.optim.lr_scheduler.CosineAnnealingLR`, fused (and, like torch's, it keeps
    oscillating past ``T_max``)."""

    _kind = Kind.CosineAnnealingLR
    _settings = ("T_max", "eta_min")
    _plain_step = PlainStep(Family.Plan, needs=("is_initial",))


class ChainedScheduler(LRScheduler, _torch.ChainedScheduler):
    """:class:`torch.optim.lr_scheduler.ChainedScheduler`; each child steps through its engine path."""

    # Children all of schedx's own StepPlan classes: the whole step in the engine (see
    # _StepPlanScheduler.step); any other step runs _python_step.
    step = _engine.chain_step_method
    _plain_step = PlainStep(Family.Chain)
    # torch's step() calls only its children's step().
    _step_hooks = ()

    def _python_step(self, *args, **kwargs) -> None:
        if args or kwargs:
            # torch's step() takes no argument: its TypeError.
            return _torch.ChainedScheduler.step(self, *args, **kwargs)
        if self._in_tensor_mode and _tensor_mode.tensor_step(self):
            return
        if self._fused_chain_step():
            return
        _step_children(_step_each, self._schedulers)
        self._last_lr = _current_lrs(self._schedulers[-1].optimizer)
        if _holds_tensors(self._last_lr):
            _enter_composite(self, _tensor_mode.CHAINED, ())

    def _fused_chain_step(self) -> bool:
        """Every child's plain step in one engine pass (one read and one write per group), when every
        child is a StepPlan scheduler past its first step on float LRs; False when the children must
        step one by one."""
        children = self._schedulers
        for child in children:
            if not _PLAIN_STEP[type(child)] or child._step_count == 1 or _child_runs_torch_code(child):
                return False
        last_lr = _engine.chain_get_lr(self)
        if last_lr is None:
            return False
        self._last_lr = last_lr
        return True


class ReduceLROnPlateau(LRScheduler, _torch.ReduceLROnPlateau):
    """:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`; bookkeeping and reduction in the engine."""

    # A step with a float or int metric and no epoch runs whole in the engine (see
    # _StepPlanScheduler.step); any other runs _python_step.
    step = _engine.plateau_step_method
    _step_hooks = (_era.IS_BETTER, "in_cooldown", "_reduce_lr")
    _plain_step = PlainStep(Family.Plateau)

    def _python_step(self, metrics, epoch=None) -> None:
        if self._in_tensor_mode and _tensor_mode.tensor_step(self, epoch, metrics):
            return
        if _runs_torch_code(self) or (epoch is not None and not _era.WARNS_AT_CALLER):
            return _call_torch_step(_torch.ReduceLROnPlateau.step, self, metrics, epoch, stacklevel=3)
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self.last_epoch = epoch

        # The inputs are read from the instance dict, as the engine's plain step reads them.
        result = _engine.plateau_get_lr(self, current)
        if result is None:
            self._last_lr = self._reference_observe(current, epoch)
            _tensor_mode.enter(self, [self], self._tensor_stages)
            return
        last_lr, best, self.num_bad_epochs, self.cooldown_counter = result
        if best is not None:  # a better metric; torch keeps its `best` object otherwise
            self.best = best
        self._last_lr = last_lr

    _tensor_state_names = ("best", "num_bad_epochs", "cooldown_counter")

    def _tensor_stage(self):
        if not _era.TENSOR_LRS_FILLED_IN_PLACE:
            return None
        criterion = _engine.plateau_criterion(self.mode, self.threshold_mode)
        params = _tensor_mode.reals(
            (criterion, self.threshold, self.patience, self.cooldown, self.factor, self.eps)
        )
        state = _tensor_mode.reals([getattr(self, name) for name in self._tensor_state_names])
        if params is None or state is None or type(self.num_bad_epochs) is not int:
            return None
        return StageSpec(
            _tensor_mode.FAMILY_PLATEAU,
            params=params,
            rows=(self.min_lrs,),
            state_names=self._tensor_state_names,
        )

    def _reference_observe(self, current: float, epoch) -> list[Any]:
        """torch's bookkeeping, for the steps the engine hands back (tensor LRs, non-int counters)."""
        if getattr(self, _era.IS_BETTER)(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1

        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0

        if self.num_bad_epochs > self.patience:
            self._reduce_lr(epoch)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

        return _era.param_groups_val_list(self.optimizer, "lr")


# torch's built-in scale functions and the type exp_range's is bound with, as the engine recognizes them.
_CYCLIC_SCALE_FUNCTIONS = (
    _torch.CyclicLR._triangular_scale_fn,
    _torch.CyclicLR._triangular2_scale_fn,
    _torch.CyclicLR._exp_range_scale_fn,
    functools.partial,
)


class CyclicLR(LRScheduler, _torch.CyclicLR):
    """:class:`torch.optim.lr_scheduler.CyclicLR`, fused, momentum included. A custom ``scale_fn``
    runs through torch's own code, which calls it as often as torch does (once per group, and again
    per group for the momentum)."""

    # With a built-in scale function, a plain step runs whole in the engine (see
    # _StepPlanScheduler.step); any other runs LRScheduler.step.
    step = _engine.step_method
    _python_step = LRScheduler.step
    _step_hooks = (*LRScheduler._step_hooks, "scale_fn")
    _plain_step = PlainStep(Family.Cyclic, extra=_CYCLIC_SCALE_FUNCTIONS)

    def _fused_lr(self):
        # The inputs are read from the instance dict, as the engine's plain step reads them.
        return _engine.cyclic_get_lr(self, _CYCLIC_SCALE_FUNCTIONS)

    def _tensor_stage(self):
        mode, gamma = self._builtin_scale()
        params = _tensor_mode.reals((self.total_size, self.step_ratio, mode, gamma))
        if mode < 0 or self._scale_fn_custom is not None or params is None:
            return None
        rows = [self.base_lrs, self.max_lrs]
        if self.cycle_momentum:
            rows += [self.base_momentums, self.max_momentums]
        flags = _tensor_mode.SCALE_BY_CYCLE if self.scale_mode == "cycle" else 0
        if self.cycle_momentum:
            flags |= _tensor_mode.CYCLE_MOMENTUM
        return StageSpec(
            _tensor_mode.FAMILY_CYCLIC,
            flags=flags,
            params=params,
            rows=tuple(rows),
            uses_momentum=self.cycle_momentum,
        )

    def _builtin_scale(self) -> tuple[int, float]:
        """The built-in scale function torch bound at construction or load (`_scale_fn_ref`), as
        csrc/formulas.h's CyclicMode and exp_range's gamma; (-1, 0.0) for anything else (the engine's
        recognition, the one its plain step uses)."""
        return _engine.cyclic_builtin_scale(self.__dict__.get("_scale_fn_ref"), _CYCLIC_SCALE_FUNCTIONS)


class CosineAnnealingWarmRestarts(_StepPlanScheduler, _torch.CosineAnnealingWarmRestarts):
    """:class:`torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`, fused. The restart bookkeeping
    is torch's, `math.log` included."""

    _kind = Kind.CosineAnnealingWarmRestarts
    _settings = ("T_cur", "T_i", "eta_min")
    _plain_step = PlainStep(Family.WarmRestarts, (), needs=("restart_by_modulo",))
    _tensor_state_names = ("T_cur", "T_i")
    # torch's step() here calls get_lr() itself, and assigns the LRs.
    _step_hooks = ("get_lr",)
    _write_group_lr = staticmethod(_era.assign_param_group_val)

    def _tensor_flags(self) -> int:
        # torch's step() here never counts steps.
        return _tensor_mode.NO_STEP_COUNT

    def _tensor_stage(self):
        return super()._tensor_stage() if _era.TENSOR_LRS_FILLED_IN_PLACE else None

    def _tensor_params(self):
        # T_cur and T_i are the program's state; T_mult is read at every restart.
        return _tensor_mode.reals((0, 0, self.eta_min, self.T_mult))

    # A plain step runs whole in the engine (see _StepPlanScheduler.step); any other runs
    # _python_step.
    step = _engine.step_method

    def _python_step(self, epoch=None) -> None:
        if self._in_tensor_mode and _tensor_mode.tensor_step(self, epoch):
            return
        if epoch is None and self.last_epoch < 0:
            epoch = 0

        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = _era.restarted_t_cur(self.T_cur, self.T_i)
                self.T_i = self.T_i * self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** (n)
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._get_lr_called_within_step = False
        self._apply_lr(closed_form=False)


class OneCycleLR(LRScheduler, _torch.OneCycleLR):
    """:class:`torch.optim.lr_scheduler.OneCycleLR`, fused, momentum included; stepping past
    ``total_steps`` raises torch's "Tried to step" error."""

    # A plain step runs whole in the engine (see _StepPlanScheduler.step); any other runs
    # LRScheduler.step.
    step = _engine.step_method
    _python_step = LRScheduler.step
    _step_hooks = (*LRScheduler._step_hooks, "_anneal_func", "_annealing_cos", "_annealing_linear")
    _plain_step = PlainStep(Family.OneCycle)

    def _fused_lr(self):
        # The inputs are read from the instance dict, as the engine's plain step reads them.
        return _engine.one_cycle_get_lr(self)

    def _tensor_stage(self):
        strategy = getattr(self, "_anneal_func_type", None)
        phases = self._one_cycle_phase_params()
        if strategy not in ("cos", "linear") or phases is None:
            return None
        groups = self.optimizer.param_groups
        keys = _ONE_CYCLE_ROWS if self.cycle_momentum else _ONE_CYCLE_ROWS[:3]
        if any(key not in group for group in groups for key in keys):
            return None
        flags = _tensor_mode.ANNEAL_COS if strategy == "cos" else 0
        if self.cycle_momentum:
            flags |= _tensor_mode.CYCLE_MOMENTUM
        params = _tensor_mode.reals((self.total_steps, len(self._schedule_phases), *phases))
        return StageSpec(
            _tensor_mode.FAMILY_ONE_CYCLE,
            flags=flags,
            params=params,
            rows=tuple([group[key] for group in groups] for key in keys),
            uses_momentum=self.cycle_momentum,
        )

    def _one_cycle_phase_params(self) -> list[float] | None:
        """The phases' end steps and the rows (program.h's `row`) each anneals between, or None when
        they are not the keys torch builds."""
        phases = self._schedule_phases
        if not 1 <= len(phases) <= _ONE_CYCLE_MAX_PHASES:
            return None
        columns = []
        for field in ("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum"):
            values = [phase.get(field) for phase in phases]
            if field != "end_step":
                values = [_ONE_CYCLE_ROWS.index(v) if v in _ONE_CYCLE_ROWS else None for v in values]
            if any(v is None for v in values):
                return None
            columns += values + [0] * (_ONE_CYCLE_MAX_PHASES - len(values))
        return columns


# program.h's OneCycle rows, by the group keys torch's phases name.
_ONE_CYCLE_ROWS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")
_ONE_CYCLE_MAX_PHASES = _engine.CONSTANTS["Limit"]["MAX_ONE_CYCLE_PHASES"]


class ScheduleLR(LRScheduler):
    """Each group's LR from a :mod:`schedx.schedules` schedule, computed by the engine.

    Like :class:`LambdaLR` with the schedule as its lambda (``initial_lr * schedule(step)``), except
    that a schedule whose value is an LR (built on ``base_lr``) gives the LR itself. `schedule` is one schedule for every
    group or a list with one per group. The state dict is LambdaLR's (the schedules, which are code,
    saved as None, as LambdaLR saves plain functions), so either class loads the other's. Tensor LRs run as a tensor-mode program (capturable in a CUDA graph) when the
    schedules are factors (no ``base_lr``) and at most four distinct ones.

    Each group's LR at step t (`last_epoch`):

        lr = initial_lr * schedule(t)        (a factor schedule, as LambdaLR)
        lr = schedule(t, base_lr=initial_lr)  (a schedule built on base_lr: an LR)

    `schedule` is a :class:`schedx.schedules.Schedule` or a number (a constant factor; TypeError
    otherwise); a list must have one per group (ValueError otherwise), and a schedule too large for the
    engine is refused here, not at a step. The schedules are optax's way of writing schedules (composable pure functions
    of the step) run by torch's LambdaLR contract.

    >>> import torch
    >>> from schedx import lr_scheduler, schedules as S
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> scheduler = lr_scheduler.ScheduleLR(optimizer, S.warmup(2, S.cosine(steps=4)))
    >>> lrs = []
    >>> for _ in range(7):
    ...     lrs.append(optimizer.param_groups[0]["lr"])
    ...     optimizer.step()
    ...     scheduler.step()
    >>> [round(lr, 4) for lr in lrs]
    [0.0, 0.05, 0.1, 0.0854, 0.05, 0.0146, 0.0]
    """

    # As LambdaLR's.
    step = _engine.step_method
    _python_step = LRScheduler.step
    _plain_step = PlainStep(Family.Schedule, ("schedules",), (False, True))

    def __init__(self, optimizer, schedule, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        n_groups = len(optimizer.param_groups)
        if isinstance(schedule, (list, tuple)):
            if len(schedule) != n_groups:
                raise ValueError(f"Expected {n_groups} schedules, but got {len(schedule)}")
            self.schedules = [_schedules.as_schedule(s) for s in schedule]
        else:
            self.schedules = [_schedules.as_schedule(schedule)] * n_groups
        for s in self.schedules:
            s._program()  # a schedule too large for the engine is refused here, not at a step
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedules")}
        state["lr_lambdas"] = [None] * len(self.schedules)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = {k: v for k, v in state_dict.items() if k not in ("lr_lambdas", "schedules")}
        self.__dict__.update(state_dict)

    def get_lr(self) -> list[float]:
        _warn_get_lr_called_within_step(self)
        return [s.lr(self.last_epoch, base) for s, base in zip(self.schedules, self.base_lrs, strict=True)]

    def _fused_lr(self):
        programs = _compiled_schedules(self, self.schedules)
        return _engine.schedule_step(
            self.optimizer.param_groups, self.base_lrs, programs, self.last_epoch, True
        )

    def _tensor_stage(self):
        return _schedule_stage(self, "schedules", factors_only=False)

    def _raise_schedule_error(self, epoch: int) -> None:
        for schedule, base in zip(self.schedules, self.base_lrs, strict=True):
            schedule.lr(epoch, base)

