"""schedx: torch.optim.lr_scheduler with every parameter group's learning rate computed in one
compiled pass, bit-identical to torch.

    from schedx import lr_scheduler          # instead of torch.optim.lr_scheduler
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10_000)
"""
import torch as _torch

from ._version import __version__, check_torch as _check_torch

# Before anything reads torch's internals: an unsupported torch is one clear ImportError.
_check_torch(str(_torch.__version__))

from . import lr_scheduler, schedules, swa_utils
from .finder import find_lr
from .lr_scheduler import (
    ChainedScheduler,
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    MultiplicativeLR,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    ReduceLROnPlateau,
    ScheduleLR,
    SequentialLR,
    StepLR,
    _LRScheduler,
)
from .swa_utils import SWALR
from ._build import build_info
from ._patch import from_torch, is_patched, patch, patched, unpatch

__all__ = [
    *lr_scheduler.__all__, "SWALR", "build_info", "find_lr", "from_torch", "is_patched", "lr_scheduler",
    "patch", "patched", "schedules", "swa_utils", "unpatch",
]
