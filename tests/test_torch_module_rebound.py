"""schedx holds torch's classes as they were at import: rebinding names in torch's modules (a user's
`torch.optim.lr_scheduler.SequentialLR = schedx.SequentialLR`, as frameworks are patched) changes
nothing schedx computes."""
from __future__ import annotations

import pytest
import torch
import torch.optim.lr_scheduler as torch_lr
import torch.optim.swa_utils as torch_swa

import schedx
import schedx.swa_utils

# torch's own classes, taken before any test rebinds them.
TORCH_CLASSES = {name: getattr(torch_lr, name) for name in torch_lr.__all__ if isinstance(getattr(torch_lr, name), type)}
TORCH_SWALR = torch_swa.SWALR


def builders(classes):
    c = classes
    return {
        "SequentialLR": lambda o: c["SequentialLR"](
            o, [c["ConstantLR"](o, factor=0.5, total_iters=2), c["ExponentialLR"](o, gamma=0.9)], milestones=[3]
        ),
        "ChainedScheduler": lambda o: c["ChainedScheduler"](
            [c["StepLR"](o, step_size=2, gamma=0.5), c["LinearLR"](o, start_factor=0.3, total_iters=4)]
        ),
        "CosineAnnealingWarmRestarts": lambda o: c["CosineAnnealingWarmRestarts"](o, T_0=3, T_mult=2),
        "OneCycleLR": lambda o: c["OneCycleLR"](o, max_lr=0.5, total_steps=20),
        "ReduceLROnPlateau": lambda o: c["ReduceLROnPlateau"](o, patience=1),
        "SWALR": lambda o: c["SWALR"](o, swa_lr=0.05, anneal_epochs=3),
    }


def lrs(build, steps=12):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    scheduler = build(optimizer)
    out = []
    for k in range(steps):
        optimizer.step()
        if isinstance(scheduler, torch_lr.ReduceLROnPlateau):
            scheduler.step(1.0)
        else:
            scheduler.step()
        out.append([g["lr"] for g in optimizer.param_groups])
    return out


@pytest.mark.parametrize("name", list(builders({})))
def test_a_schedx_scheduler_steps_as_torchs_with_torchs_module_names_bound_to_schedx(name, monkeypatch):
    expected = lrs(builders({**TORCH_CLASSES, "SWALR": TORCH_SWALR})[name])
    schedx_classes = {n: getattr(schedx, n) for n in TORCH_CLASSES} | {"SWALR": schedx.SWALR}
    for n, cls in schedx_classes.items():
        monkeypatch.setattr(torch_swa if n == "SWALR" else torch_lr, n, cls)
    assert lrs(builders(schedx_classes)[name]) == expected
