r"""torch.optim.lr_scheduler, computed by schedx's fused engine.

Each class subclasses torch's class of the same name, so construction, validation, attributes,
`get_lr()`, `_get_closed_form_lr()`, `state_dict()` and warnings are torch's own. Only the step's
compute path differs: instead of a Python loop over parameter groups, one call into the compiled
engine (csrc/) computes every group's new learning rate (and momentum / betas) and writes it.

The classes appear in torch's order, so the two files can be read side by side.

LRs that are not Python floats or ints (tensors, numpy float32, ...) and inputs on which Python's
arithmetic would raise are handed to torch's own code for that step (`_reference_lr`): the result, or
the exception, is then torch's by construction, and the optimizer is never left half-updated.
"""
from __future__ import annotations

import functools
import math
import operator
import warnings
from bisect import bisect_right
from typing import Any

from torch.optim import lr_scheduler as _torch
from torch.optim.lr_scheduler import (
    EPOCH_DEPRECATION_WARNING,
    _enable_get_lr_call,
    _param_groups_val_list,
    _update_param_group_val,
)

from . import _engine
from ._engine import Kind

__all__ = list(_torch.__all__)


def _current_lrs(optimizer) -> list[Any]:
    """`_param_groups_val_list(optimizer, "lr")`, read by the engine when the LRs are floats."""
    last_lr = _engine.collect_lrs(optimizer.param_groups)
    if last_lr is None:
        return _param_groups_val_list(optimizer, "lr")
    return last_lr


class LRScheduler(_torch.LRScheduler):
    r"""torch's :class:`~torch.optim.lr_scheduler.LRScheduler` with a fused step.

    Subclasses provide :meth:`_fused_lr` (and :meth:`_fused_closed_form_lr` where torch has a closed
    form): one engine call that writes every group's LR and returns the new ``_last_lr``, or ``None``
    when torch's own ``get_lr()`` must run this step. A user subclass that only implements
    ``get_lr()`` behaves exactly as it would under torch.
    """

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that writes its own get_lr() or closed form gets it called, as under torch.
        if "get_lr" in cls.__dict__:
            cls._fused_lr = LRScheduler._fused_lr
        if "_get_closed_form_lr" in cls.__dict__:
            cls._fused_closed_form_lr = LRScheduler._fused_closed_form_lr

    def step(self, epoch: int | None = None) -> None:
        # torch's own step() warns on the first call and takes the deprecated `epoch` path; every other
        # step is torch's `_step_count += 1; _update_lr()`, inlined.
        if epoch is not None or self._step_count == 1:
            caught: list[warnings.WarningMessage] = []
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    super().step(epoch)
            finally:
                # Re-issued from here, so they point at the caller's line as torch's do.
                for w in caught:
                    warnings.warn(w.message, w.category, stacklevel=2)
            return
        self._step_count += 1
        self.last_epoch += 1
        # torch's get_lr() call leaves this flag False in the instance dict, and so in state_dict().
        self._get_lr_called_within_step = False
        last_lr = self._fused_lr()
        self._last_lr = self._reference_lr(False) if last_lr is None else last_lr

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            closed_form = False
        else:
            self.last_epoch = epoch
            closed_form = hasattr(self, "_get_closed_form_lr")
        self._apply_lr(closed_form)

    def _apply_lr(self, closed_form: bool) -> None:
        self._get_lr_called_within_step = False
        last_lr = self._fused_closed_form_lr() if closed_form else self._fused_lr()
        if last_lr is None:
            last_lr = self._reference_lr(closed_form)
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
        for param_group, lr in zip(self.optimizer.param_groups, values, strict=True):
            _update_param_group_val(param_group, "lr", lr)
        return _param_groups_val_list(self.optimizer, "lr")


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

    def _fused_lr(self):
        return _engine.recursive_step(
            self._kind,
            self.optimizer.param_groups,
            self.base_lrs,
            self.last_epoch,
            self._step_count,
            self._is_initial,
            self._setting_values(self),
        )

    def _fused_closed_form_lr(self):
        return _engine.closed_form_step(
            self._kind,
            self.optimizer.param_groups,
            self.base_lrs,
            self.last_epoch,
            self._closed_form_setting_values(self),
        )


class LambdaLR(LRScheduler, _torch.LambdaLR):
    """:class:`torch.optim.lr_scheduler.LambdaLR`; the lambdas are called per group, as torch does."""

    def _fused_lr(self):
        factors = [lmbda(self.last_epoch) for lmbda in self.lr_lambdas]
        last_lr = _engine.scale_by_factors(
            self.optimizer.param_groups, self.base_lrs, factors, True
        )
        if last_lr is None:
            last_lr = self._write_lrs(
                [base_lr * f for f, base_lr in zip(factors, self.base_lrs, strict=True)]
            )
        return last_lr


class MultiplicativeLR(LRScheduler, _torch.MultiplicativeLR):
    """:class:`torch.optim.lr_scheduler.MultiplicativeLR`; the lambdas are called per group."""

    def _fused_lr(self):
        groups = self.optimizer.param_groups
        if self._is_initial:
            return _engine.collect_lrs(groups)
        factors = [lmbda(self.last_epoch) for lmbda in self.lr_lambdas]
        last_lr = _engine.scale_by_factors(groups, None, factors, False)
        if last_lr is None:
            last_lr = self._write_lrs(
                [group["lr"] * f for f, group in zip(factors, groups, strict=True)]
            )
        return last_lr


class StepLR(_StepPlanScheduler, _torch.StepLR):
    """:class:`torch.optim.lr_scheduler.StepLR`, fused."""

    _kind = Kind.StepLR
    _settings = ("step_size", "gamma")


class MultiStepLR(_StepPlanScheduler, _torch.MultiStepLR):
    """:class:`torch.optim.lr_scheduler.MultiStepLR`, fused."""

    _kind = Kind.MultiStepLR

    @staticmethod
    def _setting_values(scheduler):
        # torch's order: the membership test first, then the lookup.
        epoch, milestones = scheduler.last_epoch, scheduler.milestones
        return (milestones[epoch] if epoch in milestones else 0), scheduler.gamma

    @staticmethod
    def _closed_form_setting_values(scheduler):
        passed = bisect_right(sorted(scheduler.milestones.elements()), scheduler.last_epoch)
        return passed, scheduler.gamma


class ConstantLR(_StepPlanScheduler, _torch.ConstantLR):
    """:class:`torch.optim.lr_scheduler.ConstantLR`, fused."""

    _kind = Kind.ConstantLR
    _settings = ("factor", "total_iters")


class LinearLR(_StepPlanScheduler, _torch.LinearLR):
    """:class:`torch.optim.lr_scheduler.LinearLR`, fused."""

    _kind = Kind.LinearLR
    _settings = ("start_factor", "end_factor", "total_iters")


class ExponentialLR(_StepPlanScheduler, _torch.ExponentialLR):
    """:class:`torch.optim.lr_scheduler.ExponentialLR`, fused."""

    _kind = Kind.ExponentialLR
    _settings = ("gamma",)


class SequentialLR(LRScheduler, _torch.SequentialLR):
    """:class:`torch.optim.lr_scheduler.SequentialLR`; each child steps through its own engine path."""

    step = _torch.SequentialLR.step


class PolynomialLR(_StepPlanScheduler, _torch.PolynomialLR):
    """:class:`torch.optim.lr_scheduler.PolynomialLR`, fused."""

    _kind = Kind.PolynomialLR
    _settings = ("total_iters", "power")


class CosineAnnealingLR(_StepPlanScheduler, _torch.CosineAnnealingLR):
    """:class:`torch.optim.lr_scheduler.CosineAnnealingLR`, fused (and, like torch's, it keeps
    oscillating past ``T_max``)."""

    _kind = Kind.CosineAnnealingLR
    _settings = ("T_max", "eta_min")


class ChainedScheduler(LRScheduler, _torch.ChainedScheduler):
    """:class:`torch.optim.lr_scheduler.ChainedScheduler`; each child steps through its engine path."""

    def step(self) -> None:  # type: ignore[override]
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = _current_lrs(self._schedulers[-1].optimizer)


class ReduceLROnPlateau(LRScheduler, _torch.ReduceLROnPlateau):
    """:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`; bookkeeping and reduction in the engine."""

    def step(self, metrics, epoch=None) -> None:  # type: ignore[override]
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self.last_epoch = epoch

        last_lr = _engine.plateau_step(self, self.optimizer.param_groups, current)
        if last_lr is None:
            last_lr = self._reference_observe(current, epoch)
        self._last_lr = last_lr

    def _reference_observe(self, current: float, epoch) -> list[Any]:
        """torch's bookkeeping, for the steps the engine hands back (tensor LRs, non-int counters)."""
        if self._is_better(current, self.best):
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

        return _param_groups_val_list(self.optimizer, "lr")


class CyclicLR(LRScheduler, _torch.CyclicLR):
    """:class:`torch.optim.lr_scheduler.CyclicLR`, fused, momentum included. A custom ``scale_fn`` is
    called once per step (torch calls it once per group, with the same argument)."""

    def _fused_lr(self):
        mode, gamma = self._builtin_scale()
        return _engine.cyclic_step(
            self.optimizer.param_groups,
            self.base_lrs,
            self.max_lrs,
            self.last_epoch,
            self.total_size,
            self.step_ratio,
            mode,
            gamma,
            self._scale_fn_custom,
            self.scale_mode == "cycle",
            (self.base_momentums, self.max_momentums) if self.cycle_momentum else None,
            self.cycle_momentum and self.use_beta1,
        )

    def _builtin_scale(self) -> tuple[int, float]:
        """The built-in scale function torch bound at construction or load (`_scale_fn_ref`), as
        csrc/formulas.h's CyclicMode and exp_range's gamma; (-1, 0.0) for anything else."""
        ref = self.__dict__.get("_scale_fn_ref")
        if isinstance(ref, functools.partial):
            if ref.func is _torch.CyclicLR._exp_range_scale_fn and len(ref.args) == 1:
                return _engine.CYCLIC_MODES["exp_range"], ref.args[0]
            return -1, 0.0
        return _BUILTIN_CYCLIC_SCALES.get(ref, -1), 0.0


_BUILTIN_CYCLIC_SCALES = {
    _torch.CyclicLR._triangular_scale_fn: _engine.CYCLIC_MODES["triangular"],
    _torch.CyclicLR._triangular2_scale_fn: _engine.CYCLIC_MODES["triangular2"],
}


class CosineAnnealingWarmRestarts(_StepPlanScheduler, _torch.CosineAnnealingWarmRestarts):
    """:class:`torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`, fused. The restart bookkeeping
    is torch's, `math.log` included."""

    _kind = Kind.CosineAnnealingWarmRestarts
    _settings = ("T_cur", "T_i", "eta_min")

    def step(self, epoch=None) -> None:
        if epoch is None and self.last_epoch < 0:
            epoch = 0

        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
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
        self._apply_lr(closed_form=False)


class OneCycleLR(LRScheduler, _torch.OneCycleLR):
    """:class:`torch.optim.lr_scheduler.OneCycleLR`, fused, momentum included; stepping past
    ``total_steps`` raises torch's "Tried to step" error."""

    def _fused_lr(self):
        strategy = getattr(self, "_anneal_func_type", None)
        if strategy not in ("cos", "linear"):
            return None
        cycle_momentum = self.cycle_momentum
        return _engine.one_cycle_step(
            self.optimizer.param_groups,
            self.last_epoch,
            self.total_steps,
            self._schedule_phases,
            strategy == "cos",
            cycle_momentum,
            cycle_momentum and self.use_beta1,
        )
