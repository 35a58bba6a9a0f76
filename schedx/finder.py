"""The LR range test: train for a few hundred batches while the LR sweeps from very small to very
large, watch the loss, and pick the LR where it falls fastest.

    result = schedx.find_lr(model, optimizer, loss_fn, loader)
    print(result.suggestion, result.reason)
    result.plot("lr-range.png")

The model, the optimizer and torch's random number generators are put back exactly as they were
before the test, even when it ends with an exception, so the test can run right before training: every
parameter and buffer (the same tensor objects, their values copied back), every submodule's training
flag, every parameter's `.grad` (None stays None), the optimizer's param-group dicts and per-parameter
state (the same objects; entries the sweep added are removed), and the RNG state of the CPU and of every
CUDA device already initialized (dropout and shuffling in the sweep draw from them).
"""
from __future__ import annotations

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
    stop_reason: str | None = None  # why the sweep ended before num_iter batches

    def plot(self, path, title: str = "LR range test") -> None:
        """Loss (raw and smoothed) against LR on a log axis, framed on the smoothed loss, the suggestion
        marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.plot(self.lrs, self.losses, color="0.65", linewidth=0.8, label="loss (each batch)")
        ax.plot(self.lrs, self.smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
        if self.suggestion is not None:
            at = self.lrs.index(self.suggestion)
            ax.axvline(self.suggestion, color="tab:red", linestyle="--", linewidth=1)
            ax.plot([self.suggestion], [self.smoothed[at]], "o", color="tab:red", markersize=7,
                    label=f"suggested lr = {self.suggestion:.3g} (steepest fall)")
        ax.set_xscale("log")
        ax.set_xlim(self.lrs[0], self.lrs[-1])
        ax.set_ylim(*_frame(self.smoothed))
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def _frame(smoothed: list[float]) -> tuple[float, float]:
    """The loss axis' limits: the smoothed loss with a margin, leaving out the diverging last point
    (which would flatten everything else)."""
    body = [y for y in (smoothed[:-1] if len(smoothed) > 2 else smoothed) if math.isfinite(y)] or [0.0]
    low, high = min(body), max(body)
    margin = 0.15 * (high - low) or 0.15 * abs(high) or 1.0
    return low - margin, high + margin


MIN_RELATIVE_FALL = 1e-3


def sweep_lrs(start_lr: float, end_lr: float, num_iter: int, mode: str) -> list[float]:
    """`num_iter` LRs from `start_lr` to `end_lr`, evenly spaced in log ("exp") or linearly."""
    return list(_sweep(start_lr, end_lr, num_iter, mode))


def _sweep(start_lr: float, end_lr: float, num_iter: int, mode: str):
    """sweep_lrs' LRs one at a time (the sweep often stops early: a large num_iter costs nothing
    up front); the arguments are checked before the first."""
    if not 0 < start_lr < end_lr < math.inf:
        raise ValueError(f"need 0 < start_lr < end_lr < inf, got {start_lr} and {end_lr}")
    if type(num_iter) is not int or num_iter < 2:
        raise ValueError(f"num_iter must be an int of at least 2, got {num_iter!r}")
    if mode not in ("exp", "linear"):
        raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}")
    return _spaced(start_lr, end_lr, num_iter, mode)


def _spaced(start_lr: float, end_lr: float, num_iter: int, mode: str):
    if mode == "exp":
        ratio = end_lr / start_lr
        return (start_lr * ratio ** (i / (num_iter - 1)) for i in range(num_iter))
    return (start_lr + (end_lr - start_lr) * i / (num_iter - 1) for i in range(num_iter))


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


def _check_settings(smoothing: float, diverge_factor: float, skip_start: int, skip_end: int) -> None:
    """ValueError before the sweep for settings it would fail on (smoothing=0 divided by zero at the
    first batch) or that make no sense."""
    if not 0 < smoothing <= 1:
        raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
    if not diverge_factor >= 1:
        raise ValueError(f"diverge_factor must be at least 1, got {diverge_factor}")
    for name, value in (("skip_start", skip_start), ("skip_end", skip_end)):
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")


class _DataRanOut(Exception):
    """A one-shot iterator (or an iterable that yields nothing on a later pass) ran out mid-sweep."""


def _batches(data: Iterable):
    """`data` cycled for as long as the sweep needs it, as LR range tests commonly do: a re-iterable
    (a list, a DataLoader) starts a new pass when one ends. An iterator cannot start again: when it
    ends, so does the sweep (_DataRanOut)."""
    passes = 0
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty and passes == 0:
            raise ValueError("the data yielded no batch")
        if empty or iter(data) is data:
            raise _DataRanOut
        passes += 1


class _Restorer:
    """What the sweep can change in the model, the optimizer and torch's RNGs, saved so that it can be
    put back: the same objects, their values copied back."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.tensors = [(slots, name, tensor, tensor.detach().clone())
                        for module in model.modules()
                        for slots in (module._parameters, module._buffers)
                        for name, tensor in slots.items() if tensor is not None]
        self.training = [(module, module.training) for module in model.modules()]
        params = {id(p): p for p in model.parameters()}
        params |= {id(p): p for group in optimizer.param_groups for p in group["params"]}
        self.grads = [(p, p.grad, None if p.grad is None else p.grad.detach().clone()) for p in params.values()]
        self.optimizer = optimizer
        # The optimizer's attributes (a scheduler's step counting sets `_opt_called`, say).
        self.attributes = dict(optimizer.__dict__)
        self.groups = [(group, _saved_items(group)) for group in optimizer.param_groups]
        self.group_list = list(optimizer.param_groups)
        self.state = [(p, s, _saved_items(s)) for p, s in optimizer.state.items()]
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        with torch.no_grad():
            for slots, name, tensor, value in self.tensors:
                slots[name] = tensor
                tensor.copy_(value)
            for p, grad, value in self.grads:
                if grad is not None:
                    grad.copy_(value)
                p.grad = grad
        for module, training in self.training:
            module.training = training
        optimizer = self.optimizer
        optimizer.__dict__.clear()
        optimizer.__dict__.update(self.attributes)
        optimizer.param_groups[:] = self.group_list
        for group, items in self.groups:
            _put_back(group, items)
        optimizer.state.clear()
        for p, state, items in self.state:
            _put_back(state, items)
            optimizer.state[p] = state
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


def _saved_items(mapping: dict) -> list:
    """(key, object, saved value) for each item: a tensor's value is a copy, anything else is kept."""
    return [(k, v, v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in mapping.items()]


def _put_back(mapping: dict, items: list) -> None:
    mapping.clear()
    with torch.no_grad():
        for key, obj, value in items:
            if isinstance(obj, torch.Tensor):
                obj.copy_(value)
            mapping[key] = obj


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
    smoothed loss falls fastest. `data` is cycled when the sweep needs more batches than one pass
    gives; an iterator that runs out ends the sweep (`stop_reason` says after how many batches). Model,
    optimizer and torch's RNG states are restored afterwards (see the module's documentation).

    The LR range test of Smith, "Cyclical Learning Rates for Training Neural Networks" (WACV 2017). At
    batch i of n = `num_iter` (an int, at least 2):

        lr_i = start_lr * (end_lr / start_lr) ** (i / (n - 1))     (mode "exp")
        lr_i = start_lr + (end_lr - start_lr) * i / (n - 1)        (mode "linear")
        average_i = smoothing * loss_i + (1 - smoothing) * average_(i-1),   average_(-1) = 0
        smoothed_i = average_i / (1 - (1 - smoothing) ** (i + 1))           (bias-corrected)

    The sweep stops when smoothed_i is not finite or exceeds ``diverge_factor * min(smoothed)``; the
    suggestion is the LR where the smoothed loss falls fastest against ln(lr), leaving out the first
    `skip_start` and last `skip_end` points. Before the first batch, ValueError unless
    ``0 < start_lr < end_lr < inf``, `mode` is "exp" or "linear", ``0 < smoothing <= 1``,
    ``diverge_factor >= 1`` and `skip_start` and `skip_end` are non-negative ints.

    >>> import schedx
    >>> from schedx.finder import demo_problem
    >>> model, optimizer, loss_fn, batches = demo_problem()
    >>> result = schedx.find_lr(model, optimizer, loss_fn, batches, progress=False)
    >>> result.lrs[0], result.stopped_early, result.stop_reason
    (1e-07, True, 'the loss diverged at lr ...')
    >>> optimizer.param_groups[0]["lr"]   # put back
    0.01
    """
    lrs_planned = _sweep(start_lr, end_lr, num_iter, mode)
    _check_settings(smoothing, diverge_factor, skip_start, skip_end)
    restorer = _Restorer(model, optimizer)
    lrs, losses, smoothed = [], [], []
    average, best, stopped_early, stop_reason = 0.0, math.inf, False, None
    try:
        model.train()
        batches = _batches(data)
        for i, lr in enumerate(lrs_planned):
            try:
                inputs, targets = next(batches)
            except _DataRanOut:
                stopped_early = True
                stop_reason = f"the data ran out after {i} batches (an iterator cannot be cycled)"
                break
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
                if i < num_iter - 1:
                    stopped_early, stop_reason = True, f"the loss diverged at lr {lr:.3e}"
                break
    finally:
        restorer.restore()
    if progress and stop_reason is not None:
        print(f"[find_lr] stopped: {stop_reason}", file=sys.stderr)
    suggestion, reason = suggest(lrs, smoothed, skip_start, skip_end)
    return RangeTestResult(lrs, losses, smoothed, suggestion, reason, stopped_early, stop_reason)


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
