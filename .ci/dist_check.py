"""`make dist-check`: a short training loop with the installed schedx, as a user would write it.

Run outside the checkout, so that `import schedx` is the installed wheel; fails unless the scheduler's
LRs are torch's, step for step.
"""
import pathlib

import torch
from torch import nn

import schedx
from schedx import lr_scheduler


def train(scheduler_module) -> list[float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = scheduler_module.OneCycleLR(optimizer, max_lr=0.1, total_steps=50)
    inputs, targets = torch.randn(256, 8), torch.randn(256, 1)
    lrs = []
    for step in range(50):
        batch = slice(step % 8 * 32, step % 8 * 32 + 32)
        loss = nn.functional.mse_loss(model(inputs[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


installed = pathlib.Path(schedx.__file__).parent
assert "site-packages" in installed.parts, f"schedx imported from {installed}, not the installed wheel"
assert train(lr_scheduler) == train(torch.optim.lr_scheduler), "schedx's LRs differ from torch's"
print(f"dist-check: 50 training steps with schedx {schedx.__version__} from {installed}: LRs == torch's")
