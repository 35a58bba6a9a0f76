"""torch.optim.swa_utils.SWALR, computed by schedx's fused engine."""
from __future__ import annotations

import types

from torch.optim import swa_utils as _torch_swa_module

from . import _engine
from ._engine import Family
from ._stepping import PlainStep
from .lr_scheduler import LRScheduler

__all__ = ["SWALR"]

# torch's swa_utils as it was when schedx was imported (see lr_scheduler.py's `_torch`).
_torch_swa = types.SimpleNamespace(**vars(_torch_swa_module))

# torch's two anneal functions, (cosine, linear), as the engine recognizes them.
_ANNEAL_FUNCTIONS = (_torch_swa.SWALR._cosine_anneal, _torch_swa.SWALR._linear_anneal)


class SWALR(LRScheduler, _torch_swa.SWALR):
    """:class:`torch.optim.swa_utils.SWALR`, fused: every group anneals towards its ``swa_lr`` in one
    engine call. A custom ``anneal_func`` set on the instance runs through torch's own code."""

    # A plain step runs whole in the engine (see lr_scheduler._StepPlanScheduler.step); any other
    # runs LRScheduler.step.
    step = _engine.step_method
    _python_step = LRScheduler.step
    _step_hooks = (*LRScheduler._step_hooks, "_get_initial_lr")
    _plain_step = PlainStep(Family.Swa, extra=_ANNEAL_FUNCTIONS)

    def _fused_lr(self):
        # The inputs are read from the instance dict, as the engine's plain step reads them.
        return _engine.swa_get_lr(self, _ANNEAL_FUNCTIONS)

