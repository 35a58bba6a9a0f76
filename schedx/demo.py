"""schedx's main demonstration: ``python -m schedx.demo`` (or ``make demo``).

Trains a small deep MLP twice from the same initial state, with layer-wise learning-rate decay over
more than two hundred parameter groups and a per-iteration ``OneCycleLR`` (which also cycles SGD's
momentum): once with ``torch.optim.lr_scheduler.OneCycleLR``, once with
``schedx.lr_scheduler.OneCycleLR``. It then checks that

* every group's learning rate and momentum, after every ``scheduler.step()``, are identical (``==``,
  and the same Python type) in the two runs, and so is ``get_last_lr()``;
* the final model parameters are identical (bit for bit);

and reports the time spent in ``scheduler.step()`` alone, in training and in a tight loop.
Exits with status 1 if anything differs.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time

import torch
from torch import nn

import schedx
from schedx import lr_scheduler as sx_lr_scheduler

# --- the setting -----------------------------------------------------------------------------------

SEED = 0
IN_FEATURES = 32
WIDTH = 64
OUT_FEATURES = 8
N_LAYERS = 14            # nn.Linear-like layers
ROWS_PER_BLOCK = 4       # each weight is stored as row blocks of this many output rows, one group each
LAYER_DECAY = 0.85       # layer-wise LR decay: the layer below gets 0.85x the LR of the layer above
PEAK_LR = 0.05           # max_lr of the top layer's weights
BIAS_LR_MULT = 2.0       # biases: twice the weights' LR, no weight decay
WEIGHT_DECAY = 1e-4
N_SAMPLES = 8192
BATCH = 128
TOTAL_STEPS = 300        # OneCycleLR's total_steps; scheduler.step() is called this many times
PROGRESS_EVERY = 100
TIGHT_STEPS = 2000       # tight loop: scheduler.step() only, fresh optimizer and scheduler per repeat
TIGHT_REPEATS = 5


class BlockLinear(nn.Module):
    """A linear layer whose weight is stored as row blocks, one ``nn.Parameter`` each.

    Mathematically the same as ``nn.Linear``; the split only lets each block of output units sit in
    its own parameter group (with its own learning rate), as fine-grained LR schemes do.
    """

    def __init__(self, in_features: int, out_features: int, rows_per_block: int) -> None:
        super().__init__()
        full = nn.Linear(in_features, out_features)  # torch's default initialisation
        self.blocks = nn.ParameterList(
            nn.Parameter(w.clone()) for w in full.weight.detach().split(rows_per_block, dim=0)
        )
        self.bias = nn.Parameter(full.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, torch.cat(list(self.blocks), dim=0), self.bias)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        dims = [IN_FEATURES] + [WIDTH] * (N_LAYERS - 1) + [OUT_FEATURES]
        self.layers = nn.ModuleList(
            BlockLinear(dims[i], dims[i + 1], ROWS_PER_BLOCK) for i in range(N_LAYERS)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            y = layer(x)
            # residual connections keep a 14-layer tanh MLP trainable at these learning rates
            x = y if i in (0, N_LAYERS - 1) else x + torch.tanh(y)
        return x


def param_groups(model: MLP) -> list[dict]:
    """Layer-wise LR decay: one group per weight row block and one per bias, each with its own LR.

    The top layer gets PEAK_LR; each layer below gets LAYER_DECAY times the layer above. Within a
    layer, row blocks get a small deterministic spread (0.9x to 1.1x), so the groups of a layer differ
    too, as they do under finer-grained LR schemes.
    """
    groups = []
    for depth, layer in enumerate(model.layers):
        layer_lr = PEAK_LR * LAYER_DECAY ** (N_LAYERS - 1 - depth)
        n = len(layer.blocks)
        for j, block in enumerate(layer.blocks):
            spread = 0.9 + 0.2 * j / max(1, n - 1)
            groups.append({"params": [block], "lr": layer_lr * spread, "weight_decay": WEIGHT_DECAY})
        groups.append({"params": [layer.bias], "lr": layer_lr * BIAS_LR_MULT, "weight_decay": 0.0})
    return groups


def make_optimizer(model: MLP) -> torch.optim.SGD:
    return torch.optim.SGD(param_groups(model), lr=PEAK_LR, momentum=0.9)


def make_scheduler(module, optimizer: torch.optim.SGD, total_steps: int = TOTAL_STEPS):
    # One max_lr per group: each group's own base LR is its peak.
    max_lrs = [g["lr"] for g in optimizer.param_groups]
    return module.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total_steps)


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth non-linear regression target from a fixed random 'teacher'."""
    g = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(N_SAMPLES, IN_FEATURES, generator=g)
    w1 = torch.randn(IN_FEATURES, 48, generator=g) / math.sqrt(IN_FEATURES)
    w2 = torch.randn(48, OUT_FEATURES, generator=g) / math.sqrt(48)
    y = torch.sin(x @ w1) @ w2 + 0.01 * torch.randn(N_SAMPLES, OUT_FEATURES, generator=g)
    return x, y


def snapshot(optimizer: torch.optim.Optimizer, scheduler) -> tuple[list, list, list]:
    groups = optimizer.param_groups
    return (
        [g["lr"] for g in groups],
        [g["momentum"] for g in groups],
        list(scheduler.get_last_lr()),
    )


def train(name: str, module, model: MLP, data, batches: list[torch.Tensor]):
    """The usual loop. Returns (trajectory, step times in ns, final loss)."""
    x, y = data
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(module, optimizer)
    loss_fn = nn.MSELoss()
    trajectory = [snapshot(optimizer, scheduler)]  # index 0: after construction
    times = []
    t_start = time.perf_counter()
    for step, idx in enumerate(batches, start=1):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        t0 = time.perf_counter_ns()
        scheduler.step()
        times.append(time.perf_counter_ns() - t0)
        trajectory.append(snapshot(optimizer, scheduler))
        if step % PROGRESS_EVERY == 0 or step == len(batches):
            lr_top = optimizer.param_groups[-2]["lr"]
            print(
                f"  {name:<6} step {step:>4}/{len(batches)}  loss {loss.item():.5f}  "
                f"top-layer lr {lr_top:.3e}  momentum {optimizer.param_groups[-2]['momentum']:.4f}",
                flush=True,
            )
    print(f"  {name:<6} done in {time.perf_counter() - t_start:.2f} s", flush=True)
    return trajectory, times, loss.item()


def first_difference(a: list, b: list):
    """First (step, what, group, torch value, schedx value) where the trajectories differ, or None."""
    what_names = ("lr", "momentum", "get_last_lr()")
    if len(a) != len(b):
        return (min(len(a), len(b)), "number of steps", None, len(a), len(b))
    for step, (sa, sb) in enumerate(zip(a, b)):
        for what, va, vb in zip(what_names, sa, sb):
            if len(va) != len(vb):
                return (step, f"number of {what} values", None, len(va), len(vb))
            for gi, (p, q) in enumerate(zip(va, vb)):
                if not (p == q and type(p) is type(q)):
                    return (step, what, gi, p, q)
    return None


def tight_loop_us(module, template: MLP) -> float:
    """µs per scheduler.step() over TIGHT_STEPS steps, with a fresh optimizer and scheduler."""
    model = copy.deepcopy(template)
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(module, optimizer, total_steps=TIGHT_STEPS)
    optimizer.step()  # no gradients: changes nothing, but marks the optimizer as stepped (no warning)
    t0 = time.perf_counter_ns()
    for _ in range(TIGHT_STEPS):
        scheduler.step()
    return (time.perf_counter_ns() - t0) / TIGHT_STEPS / 1e3


def main() -> int:
    # The model is tiny: one intra-op thread trains it as fast as two, and keeps the demo's run time
    # steady on a busy machine (spinning OpenMP threads slow down badly when cores are shared).
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    template = MLP()
    data = make_data()
    g = torch.Generator().manual_seed(SEED + 2)
    batches = [torch.randint(0, N_SAMPLES, (BATCH,), generator=g) for _ in range(TOTAL_STEPS)]

    n_groups = len(param_groups(template))
    n_params = sum(p.numel() for p in template.parameters())
    torch_cls = torch.optim.lr_scheduler.OneCycleLR
    sx_cls = sx_lr_scheduler.OneCycleLR
    print("schedx demo: layer-wise LR decay + per-iteration OneCycleLR (LR and momentum), SGD")
    print(
        f"  torch {torch.__version__}, schedx {getattr(schedx, '__version__', '?')} "
        f"({getattr(schedx, '__file__', '?')})"
    )
    print(
        f"  model: {N_LAYERS} linear layers (width {WIDTH}), {n_params:,} parameters in "
        f"{n_groups} parameter groups; {TOTAL_STEPS} steps of batch {BATCH}"
    )
    if sx_cls is torch_cls:
        print("  NOTE: schedx.lr_scheduler.OneCycleLR *is* torch's class here; this compares torch with itself")
    elif not issubclass(sx_cls, torch_cls):
        print("  NOTE: schedx.lr_scheduler.OneCycleLR is not a subclass of torch's OneCycleLR")

    print("training with torch.optim.lr_scheduler.OneCycleLR ...", flush=True)
    model_t = copy.deepcopy(template)
    traj_t, times_t, loss_t = train("torch", torch.optim.lr_scheduler, model_t, data, batches)
    print("training with schedx.lr_scheduler.OneCycleLR ...", flush=True)
    model_s = copy.deepcopy(template)
    traj_s, times_s, loss_s = train("schedx", sx_lr_scheduler, model_s, data, batches)

    diff = first_difference(traj_t, traj_s)
    params_equal = all(
        torch.equal(p, q) for p, q in zip(model_t.parameters(), model_s.parameters(), strict=True)
    )

    print(f"tight loop: {TIGHT_STEPS} x scheduler.step() only, {TIGHT_REPEATS} repeats each ...", flush=True)
    tight_t, tight_s = [], []
    for _ in range(TIGHT_REPEATS):  # interleaved, so drift in machine load hits both alike
        tight_t.append(tight_loop_us(torch.optim.lr_scheduler, template))
        tight_s.append(tight_loop_us(sx_lr_scheduler, template))

    med_t = statistics.median(times_t) / 1e3
    med_s = statistics.median(times_s) / 1e3
    tmed_t = statistics.median(tight_t)
    tmed_s = statistics.median(tight_s)
    values = n_groups * len(traj_t) * 3  # lr, momentum and get_last_lr() of every group, every step

    print()
    print("=" * 72)
    print("schedx demo report")
    print("=" * 72)
    print(f"parameter groups            {n_groups}")
    print(f"scheduler steps             {TOTAL_STEPS} (+ the step at construction)")
    print(f"final training loss         torch {loss_t:.6f}   schedx {loss_s:.6f}")
    if diff is None:
        print(f"LR + momentum trajectories  identical: yes ({values:,} values compared: == and same type)")
    else:
        step, what, gi, p, q = diff
        where = f"group {gi}" if gi is not None else "-"
        print("LR + momentum trajectories  identical: NO")
        print(
            f"  first difference at step {step}, {what}, {where}: "
            f"torch {p!r} ({type(p).__name__}) vs schedx {q!r} ({type(q).__name__})"
        )
    print(f"final model parameters      identical: {'yes' if params_equal else 'NO'}")
    print("scheduler.step() in training (median of per-call times)")
    print(f"  torch                     {med_t:10.1f} µs/step")
    print(f"  schedx                    {med_s:10.1f} µs/step")
    print(f"  ratio torch / schedx      {med_t / med_s:10.1f}x")
    print(f"scheduler.step() in a tight loop ({TIGHT_STEPS} steps, median of {TIGHT_REPEATS} repeats)")
    print(f"  torch                     {tmed_t:10.1f} µs/step")
    print(f"  schedx                    {tmed_s:10.1f} µs/step")
    print(f"  ratio torch / schedx      {tmed_t / tmed_s:10.1f}x")
    print("=" * 72)

    if diff is not None or not params_equal:
        print("FAIL: schedx did not reproduce torch's trajectory exactly", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
