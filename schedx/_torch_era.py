"""Where torch's lr_scheduler.py and swa_utils.py differ between the supported releases (2.5 to 2.15),
and what schedx does about it: decided once, at import, from what the installed torch has (a function,
a method, an attribute), never from its version number, so that schedx follows whichever torch it
finds and never mixes the behaviour of two releases.

The differences (read from each release's files, diffed release by release):

- 2.8 marks the construction step with `_is_initial`; before, get_lr() tests the epoch instead
  (`last_epoch == 0`; MultiplicativeLR multiplies when `last_epoch > 0`).
- 2.9 splits `step()` into the first-step warnings and `_update_lr(epoch)`; SequentialLR hands over to
  the next child with `child._update_lr(0)` (`child.step(0)` before, which warns that the epoch argument
  is deprecated); ReduceLROnPlateau's comparison becomes `_is_better` (`is_better` before).
- 2.10 reads group values through `_param_groups_val_list` (a tensor LR is cloned: `_last_lr` holds
  copies) and writes them through `_update_param_group_val` (a tensor LR is filled in place). Before,
  `_last_lr` holds the groups' own LR tensors; LRScheduler.step fills a tensor LR in place, but
  CosineAnnealingWarmRestarts.step and ReduceLROnPlateau assign (the group's tensor is replaced: by a
  new tensor, or, by ReduceLROnPlateau, by a float). The zips over the groups become strict (a group
  added after construction is a ValueError; before, it is left alone) and the warnings point at the
  caller (`stacklevel=2`; before, inside torch).
- 2.6 has `verbose` and `print_lr` (gone in 2.7), and ReduceLROnPlateau's `default_min_lr`: these are
  torch's own code, which schedx inherits, so nothing here.
- SWALR's state_dict holds `anneal_func` before 2.10 and `_anneal_strategy` from 2.10; SequentialLR's
  construction changed in 2.6 (`recursive_undo`) and 2.13: torch's own methods, inherited as they are.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor
from torch import zeros as _torch_zeros
from torch.optim import SGD as _torch_sgd
from torch.optim import lr_scheduler as _torch_lr
from torch.optim import optimizer as _torch_optimizer

# From 2.10: group values read as copies and written in place (torch's two helpers), strict zips over
# the groups, warnings pointing at the caller of step().
COPIES_GROUP_VALUES = hasattr(_torch_lr, "_param_groups_val_list")
STRICT_ZIPS = WARNS_AT_CALLER = COPIES_GROUP_VALUES
# From 2.9: LRScheduler.step() calls `_update_lr(epoch)`, which a subclass may override.
HAS_UPDATE_LR = hasattr(_torch_lr.LRScheduler, "_update_lr")


def _restarts_by_modulo() -> bool:
    """Whether torch's CosineAnnealingWarmRestarts.step restarts a period with `T_cur % T_i` (2.8 on)
    rather than `T_cur - T_i`: asked of torch's own step, on a throwaway scheduler two periods past a
    restart (no attribute tells)."""
    optimizer = _torch_sgd([_torch_zeros(1)], lr=1.0)
    scheduler = _torch_lr.CosineAnnealingWarmRestarts(optimizer, T_0=1)
    scheduler.T_cur = 2
    scheduler.step()
    return scheduler.T_cur == 0


# How CosineAnnealingWarmRestarts.step restarts a period: `T_cur % T_i` (2.8 on), `T_cur - T_i` before.
RESTARTS_BY_MODULO = _restarts_by_modulo()
# ReduceLROnPlateau's comparison of a metric with the best one, by the name torch's step() calls.
IS_BETTER = "_is_better" if hasattr(_torch_lr.ReduceLROnPlateau, "_is_better") else "is_better"
# From 2.8: the construction step is marked by `_is_initial`.
HAS_IS_INITIAL = hasattr(_torch_lr.LRScheduler, "_is_initial")

# 2.8 to 2.9 fill a tensor LR with `_to_scalar(lr)` (a one-element tensor squeezed); 2.5 to 2.7 with lr.
_to_scalar = getattr(_torch_optimizer, "_to_scalar", lambda value: value)


def _own_values(optimizer, key: str) -> list[Any]:
    """Before 2.10: `[group[key] for group in optimizer.param_groups]`, the groups' own objects."""
    return [group[key] for group in optimizer.param_groups]


def _fill_or_assign(param_group: dict[str, Any], key: str, value) -> None:
    """Before 2.10: LRScheduler.step's write (a tensor LR filled in place, anything else assigned)."""
    if isinstance(param_group[key], Tensor):
        param_group[key].fill_(_to_scalar(value))
    else:
        param_group[key] = value


def _assign(param_group: dict[str, Any], key: str, value) -> None:
    param_group[key] = value


if COPIES_GROUP_VALUES:
    param_groups_val_list = _torch_lr._param_groups_val_list
    update_param_group_val = _torch_lr._update_param_group_val
    # CosineAnnealingWarmRestarts' write, the same helper from 2.10.
    assign_param_group_val = _torch_lr._update_param_group_val
else:
    param_groups_val_list = _own_values
    update_param_group_val = _fill_or_assign
    assign_param_group_val = _assign


def zip_groups(*iterables):
    """zip over per-group lists as torch's step zips them: strict from 2.10."""
    return zip(*iterables, strict=STRICT_ZIPS)


def restarted_t_cur(t_cur, t_i):
    """CosineAnnealingWarmRestarts' `T_cur` at a restart, as the installed torch computes it."""
    return t_cur % t_i if RESTARTS_BY_MODULO else t_cur - t_i


def keeps_lrs(scheduler) -> bool:
    """Whether get_lr() of LinearLR, ExponentialLR, PolynomialLR and CosineAnnealingLR keeps the LRs as
    at construction: torch's `_is_initial` (2.8 on), `last_epoch == 0` before (the counters advanced)."""
    if HAS_IS_INITIAL:
        return scheduler._is_initial
    return scheduler.last_epoch == 0


def multiplicative_keeps_lrs(scheduler) -> bool:
    """MultiplicativeLR's test: `_is_initial` (2.8 on); before, it multiplies when `last_epoch > 0`."""
    if HAS_IS_INITIAL:
        return scheduler._is_initial
    return scheduler.last_epoch <= 0


# Whether a tensor LR keeps its tensor object at every step of every class, as a tensor-mode program
# (which fills the tensors it was built over) needs: before 2.10, CosineAnnealingWarmRestarts and
# ReduceLROnPlateau replace it, so their tensor steps stay torch's code there.
TENSOR_LRS_FILLED_IN_PLACE = COPIES_GROUP_VALUES
# Whether a SequentialLR can be one program: its hand-over must be `child._update_lr(0)` (2.9; before,
# `child.step(0)` also counts a step and warns), and its construction must leave the groups their own
# LR tensors (2.10; before, it gives them their `initial_lr` tensors, which the children's in-place
# steps then change, and with them the next children's base LRs).
SEQUENTIAL_PROGRAM = HAS_UPDATE_LR and TENSOR_LRS_FILLED_IN_PLACE



# What the engine's plain steps take of torch's rules, by name, and whether the installed torch follows
# it. A class whose PlainStep needs one this torch does not follow is not registered: its steps run in
# Python (schedx/_stepping.py's _register_plain_class).
ENGINE_FOLLOWS = {
    # LinearLR, ExponentialLR, PolynomialLR, CosineAnnealingLR and MultiplicativeLR keep the LRs at the
    # construction step by `_is_initial` (the engine's rule), not by the epoch.
    "is_initial": HAS_IS_INITIAL,
    # CosineAnnealingWarmRestarts restarts a period with `T_cur % T_i`.
    "restart_by_modulo": RESTARTS_BY_MODULO,
}
