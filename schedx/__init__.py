"""schedx: torch.optim.lr_scheduler with every parameter group's learning rate computed in one
compiled pass, bit-identical to torch.

    from schedx import lr_scheduler          # instead of torch.optim.lr_scheduler
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10_000)
"""
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

__version__ = "0.1.0"

__all__ = [*lr_scheduler.__all__, "SWALR", "find_lr", "lr_scheduler", "schedules", "swa_utils"]
