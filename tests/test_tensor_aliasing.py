"""Tensor mode fills the LR and momentum tensors in place (to stay capturable) where torch assigns new
objects to `group["momentum"]` / `group["betas"]` and copies `_last_lr`: wherever one tensor is reachable
twice among what a step writes and reads, schedx still gives torch's results."""
from __future__ import annotations

import pytest
import torch

from tensor_cases import SCHEDX, TORCH

pytestmark = pytest.mark.filterwarnings("ignore")


def f64(value) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def make_optimizer(kind: str) -> torch.optim.Optimizer:
    """Two groups with float64 tensor LRs: SGD with momentum, or Adam (betas)."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": f64(0.01 * (k + 1))} for k in range(2)]
    if kind == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def bounds():
    """Per-group tensor momentum bounds: torch's constructors make each group's momentum (or
    betas[0]) the same tensor as its max_momentum."""
    return {"max_momentum": [f64(0.95), f64(0.95)], "base_momentum": [f64(0.85), f64(0.85)]}


def one_cycle(L, o):
    return L.OneCycleLR(o, max_lr=0.5, total_steps=20, **bounds())


def cyclic(L, o):
    return L.CyclicLR(o, 0.01, 0.1, step_size_up=3, **bounds())


def plain(value):
    if isinstance(value, torch.Tensor):
        return float(value)
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def observed(optimizer, scheduler) -> tuple:
    """Everything a step may touch, as values: every group key and the scheduler's state dict."""
    groups = [{k: plain(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    state = {k: plain(v) for k, v in scheduler.state_dict().items() if k not in ("_scale_fn_ref", "_schedulers")}
    return groups, state


def trajectories(build, kind, steps=12, step=lambda s, i: s.step()):
    out = []
    for lib in (TORCH, SCHEDX):
        optimizer = make_optimizer(kind)
        scheduler = build(lib, optimizer)
        history = []
        for i in range(steps):
            step(scheduler, i)
            history.append(observed(optimizer, scheduler))
        out.append(history)
    return out


MOMENTUM_CASES = {
    "OneCycleLR-momentum": (one_cycle, "sgd"),
    "OneCycleLR-betas": (one_cycle, "adam"),
    "CyclicLR-momentum": (cyclic, "sgd"),
    "CyclicLR-betas": (cyclic, "adam"),
    "ChainedScheduler-OneCycleLR": (lambda L, o: L.ChainedScheduler([one_cycle(L, o), L.ExponentialLR(o, 0.9)]), "sgd"),
    "SequentialLR-CyclicLR": (
        lambda L, o: L.SequentialLR(o, [cyclic(L, o), L.ExponentialLR(o, 0.9)], milestones=[5]),
        "sgd",
    ),
}


@pytest.mark.parametrize("name", MOMENTUM_CASES)
def test_cycling_momentum_leaves_the_momentum_bounds_as_torch_does(name):
    build, kind = MOMENTUM_CASES[name]
    expected, got = trajectories(build, kind)
    assert got == expected


@pytest.mark.parametrize("build", [one_cycle, cyclic], ids=["OneCycleLR", "CyclicLR"])
def test_a_run_resumed_from_state_dicts_cycles_momentum_as_torchs(build):
    def run(lib):
        optimizer = make_optimizer("sgd")
        scheduler = build(lib, optimizer)
        for _ in range(7):
            scheduler.step()
        saved = optimizer.state_dict(), scheduler.state_dict()
        optimizer = make_optimizer("sgd")
        scheduler = build(lib, optimizer)
        optimizer.load_state_dict(saved[0])
        scheduler.load_state_dict(saved[1])
        momenta = []
        for _ in range(6):
            scheduler.step()
            momenta.append([float(g["momentum"]) for g in optimizer.param_groups])
        return momenta

    assert run(SCHEDX) == run(TORCH)


def test_a_last_lr_read_earlier_keeps_its_values():
    def run(lib):
        optimizer = make_optimizer("sgd")
        scheduler = lib.ExponentialLR(optimizer, 0.5)
        for _ in range(3):
            scheduler.step()
        last_lr = scheduler.get_last_lr()
        state = scheduler.state_dict()
        for _ in range(3):
            scheduler.step()
        return plain(last_lr), plain(state["_last_lr"])

    assert run(SCHEDX) == run(TORCH)


def test_a_bound_that_is_the_lr_tensor_itself_is_read_as_torch_reads_it():
    # ReduceLROnPlateau keeps the min_lr list it is given: here each group's own LR tensor, which an
    # in-place edit then raises for torch's min_lr too (so torch never reduces).
    def run(lib):
        optimizer = make_optimizer("sgd")
        scheduler = lib.ReduceLROnPlateau(optimizer, patience=0, min_lr=[g["lr"] for g in optimizer.param_groups])
        lrs = []
        for i in range(6):
            if i == 3:
                optimizer.param_groups[0]["lr"].mul_(4.0)
            scheduler.step(1.0)
            lrs.append([float(g["lr"]) for g in optimizer.param_groups])
        return lrs

    assert run(SCHEDX) == run(TORCH)


def test_base_lrs_assigned_the_lr_tensors_are_read_as_torch_reads_them():
    # CosineAnnealingLR's recursive formula reads base_lrs at every step.
    def run(lib):
        optimizer = make_optimizer("sgd")
        scheduler = lib.CosineAnnealingLR(optimizer, T_max=5)
        scheduler.step()
        scheduler.base_lrs = [g["lr"] for g in optimizer.param_groups]
        lrs = []
        for _ in range(6):
            scheduler.step()
            lrs.append([float(g["lr"]) for g in optimizer.param_groups])
        return lrs

    assert run(SCHEDX) == run(TORCH)


def test_a_group_whose_initial_lr_is_its_lr_tensor_is_read_as_torch_reads_it():
    # OneCycleLR resumed with last_epoch reads group["initial_lr"] at every step: here the LR itself.
    def run(lib):
        optimizer = make_optimizer("sgd")
        for g in optimizer.param_groups:
            g.update(initial_lr=g["lr"], max_lr=f64(0.5), min_lr=f64(1e-4))
        scheduler = lib.OneCycleLR(optimizer, max_lr=0.5, total_steps=30, cycle_momentum=False, last_epoch=3)
        lrs = []
        for _ in range(8):
            scheduler.step()
            lrs.append([float(g["lr"]) for g in optimizer.param_groups])
        return lrs

    assert run(SCHEDX) == run(TORCH)
