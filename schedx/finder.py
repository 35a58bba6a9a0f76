"""The LR range test: train for a few hundred batches while the LR sweeps from very small to very
large, watch the loss, and pick the LR where it falls fastest.

    result = schedx.find_lr(model, optimizer, loss_fn, loader)
    print(result.suggestion, result.reason)
    result.plot("lr-range.png")

The model and the optimizer are put back exactly as they were before the test (their state dicts are
saved first and loaded at the end), so the test can run right before training.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import sys
from typing import Callable, Iterable

import torch


@dataclasses.dataclass
class RangeTestResult:
    lrs: list[float]
    losses: list[float]  # raw loss of each batch
    smoothed: list[float]  # exponential moving average, bias-corrected
    suggestion: float | None
    reason: str
    stopped_early: bool

    def plot(self, path, title: str = "LR range test") -> None:
        """Loss (raw and smoothed) against LR on a log axis, the suggestion marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.plot(self.lrs, self.losses, alpha=0.3, label="loss")
        ax.plot(self.lrs, self.smoothed, label="smoothed loss")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="tab:red", linestyle="--",
                       label=f"suggested lr = {self.suggestion:.3g}")
        ax.set_xscale("log")
        # The diverging tail would flatten everything else.
        if len(self.smoothed) > 1:
            ax.set_ylim(top=1.5 * max(self.smoothed[:-1]))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


MIN_RELATIVE_FALL = 1e-3


def sweep_lrs(start_lr: float, end_lr: float, num_iter: int, mode: str) -> list[float]:
    """`num_iter` LRs from `start_lr` to `end_lr`, evenly spaced in log ("exp") or linearly."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    if num_iter < 2:
        raise ValueError(f"num_iter must be at least 2, got {num_iter}")
    if mode == "exp":
        ratio = end_lr / start_lr
        return [start_lr * ratio ** (i / (num_iter - 1)) for i in range(num_iter)]
    if mode == "linear":
        return [start_lr + (end_lr - start_lr) * i / (num_iter - 1) for i in range(num_iter)]
    raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}")


def suggest(lrs: list[float], smoothed: list[float], skip_start: int, skip_end: int):
    """The LR where the smoothed loss falls fastest against log(LR), and why; None when it never falls."""
    end = len(lrs) - skip_end
    if end - skip_start < 3:
        return None, "too few points to judge (stopped too early, or too few iterations)"
    xs = [math.log(lr) for lr in lrs[skip_start:end]]
    ys = smoothed[skip_start:end]
    slopes = [(ys[i + 1] - ys[i - 1]) / (xs[i + 1] - xs[i - 1]) for i in range(1, len(xs) - 1)]
    best = min(range(len(slopes)), key=slopes.__getitem__)
    # A fall of less than 0.1% of the loss per unit of ln(lr) is rounding, not learning.
    if slopes[best] >= -MIN_RELATIVE_FALL * max(abs(y) for y in ys):
        return None, "the smoothed loss never decreased over the sweep"
    lr = lrs[skip_start + best + 1]
    return lr, (f"steepest descent of the smoothed loss: {slopes[best]:.3g} per unit of ln(lr) "
                f"at lr = {lr:.3g}")


def _set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def _batches(data: Iterable):
    """`data` cycled for as long as the sweep needs it."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("the data yielded no batch")


def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable,
    data: Iterable,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    mode: str = "exp",
    smoothing: float = 0.05,
    diverge_factor: float = 5.0,
    skip_start: int = 5,
    skip_end: int = 2,
    progress: bool = True,
) -> RangeTestResult:
    """Sweeps the LR of every group of `optimizer` from `start_lr` to `end_lr` over `num_iter` batches
    of `data` (each `(inputs, targets)`; `loss_fn(model(inputs), targets)` is minimized), stops early
    once the smoothed loss exceeds `diverge_factor` times its best, and suggests the LR where the
    smoothed loss falls fastest. Model and optimizer are restored afterwards."""
    lrs_planned = sweep_lrs(start_lr, end_lr, num_iter, mode)
    model_state = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    was_training = model.training
    lrs, losses, smoothed = [], [], []
    average, best, stopped_early = 0.0, math.inf, False
    try:
        model.train()
        batches = _batches(data)
        for i, lr in enumerate(lrs_planned):
            inputs, targets = next(batches)
            _set_lr(optimizer, lr)
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            average = smoothing * value + (1 - smoothing) * average
            value_smoothed = average / (1 - (1 - smoothing) ** (i + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(value_smoothed)
            best = min(best, value_smoothed)
            if progress and (i % max(1, num_iter // 20) == 0 or i == num_iter - 1):
                print(f"[find_lr] {i + 1:>4}/{num_iter}  lr {lr:.3e}  loss {value_smoothed:.4g}",
                      file=sys.stderr, flush=True)
            if not math.isfinite(value_smoothed) or value_smoothed > diverge_factor * best:
                stopped_early = i < num_iter - 1
                if progress:
                    print(f"[find_lr] stopped: the loss diverged at lr {lr:.3e}", file=sys.stderr)
                break
    finally:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        model.train(was_training)
    suggestion, reason = suggest(lrs, smoothed, skip_start, skip_end)
    return RangeTestResult(lrs, losses, smoothed, suggestion, reason, stopped_early)


def demo_problem(seed: int = 0):
    """A small regression problem: an MLP and batches of noisy targets of a fixed random linear map."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(16, 1, generator=generator)
    inputs = torch.randn(2048, 16, generator=generator)
    targets = inputs @ weights + 0.1 * torch.randn(2048, 1, generator=generator)
    batches = [(inputs[i:i + 64], targets[i:i + 64]) for i in range(0, 2048, 64)]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, optimizer, torch.nn.functional.mse_loss, batches
