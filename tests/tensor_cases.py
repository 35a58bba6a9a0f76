"""Scheduler configurations for the tensor-LR tests (test_tensor_mode.py on the CPU, test_cuda.py on a
GPU): each builds the same schedule with torch's classes or schedx's, on an optimizer whose LRs are
tensors (or floats, for the float path every tensor result is compared with)."""
from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import Callable

import torch
import torch.optim.lr_scheduler as torch_lr

import schedx.lr_scheduler as schedx_lr
from schedx import _torch_era, schedules

# A custom schedule: ScheduleLR in schedx, and the same schedule as torch's LambdaLR lambda.
WARMUP_COSINE = schedules.warmup(5, schedules.cosine(end=0.05, steps=40))

N_GROUPS = 5
STEPS = 60


def metric_at(step: int) -> float:
    """A loss that falls, then stalls and wobbles, so ReduceLROnPlateau reduces several times."""
    return 1.0 / (1 + min(step, 12)) + 0.01 * math.sin(step)


def make_optimizer(lr_kind: str, dtype=torch.float64, device="cpu") -> torch.optim.SGD:
    """SGD over N_GROUPS groups with distinct LRs, representable in `dtype`: Python floats ("float")
    or one-element tensors of `dtype` ("tensor")."""
    params = [torch.nn.Parameter(torch.zeros(2, device=device)) for _ in range(N_GROUPS)]
    lrs = [torch.tensor(0.05 * (k + 1) / 3, dtype=dtype).item() for k in range(N_GROUPS)]
    if lr_kind == "tensor":
        lrs = [torch.tensor(lr, dtype=dtype, device=device) for lr in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=0.1)


# The cases schedx does not run as one program under the installed torch (schedx/_torch_era.py): before
# torch 2.10 CosineAnnealingWarmRestarts and ReduceLROnPlateau replace a tensor LR instead of filling it,
# and a SequentialLR's children keep their own programs.
WITHOUT_PROGRAM = {
    *(() if _torch_era.TENSOR_LRS_FILLED_IN_PLACE else ("CosineAnnealingWarmRestarts", "ReduceLROnPlateau")),
    *(() if _torch_era.SEQUENTIAL_PROGRAM else ("SequentialLR-warmup-cosine", "SequentialLR-three")),
}


@dataclass
class Case:
    name: str
    build: Callable  # (lr_module, optimizer) -> scheduler
    takes_metric: bool = False

    def __repr__(self) -> str:
        return self.name

    @property
    def has_program(self) -> bool:
        """Whether schedx runs this case's tensor steps as a tensor-mode program (under this torch)."""
        return self.name not in WITHOUT_PROGRAM


def _one_cycle(**kwargs):
    return lambda L, o: L.OneCycleLR(o, max_lr=0.5, total_steps=STEPS + 5, cycle_momentum=False, **kwargs)


CASES = [
    Case("StepLR", lambda L, o: L.StepLR(o, step_size=3, gamma=0.5)),
    Case("MultiStepLR", lambda L, o: L.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3)),
    Case("ConstantLR", lambda L, o: L.ConstantLR(o, factor=0.25, total_iters=4)),
    Case("LinearLR", lambda L, o: L.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=6)),
    Case("ExponentialLR", lambda L, o: L.ExponentialLR(o, gamma=0.93)),
    Case("PolynomialLR", lambda L, o: L.PolynomialLR(o, total_iters=40, power=1.7)),
    Case("CosineAnnealingLR", lambda L, o: L.CosineAnnealingLR(o, T_max=9, eta_min=1e-4)),
    Case(
        "CosineAnnealingWarmRestarts",
        lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=1e-4),
    ),
    Case(
        "CyclicLR-triangular2",
        lambda L, o: L.CyclicLR(o, 0.01, 0.1, step_size_up=3, mode="triangular2", cycle_momentum=False),
    ),
    Case(
        "CyclicLR-exp_range",
        lambda L, o: L.CyclicLR(o, 0.01, 0.1, step_size_up=4, mode="exp_range", gamma=0.97,
                                cycle_momentum=False),
    ),
    Case("OneCycleLR-cos", _one_cycle()),
    Case("OneCycleLR-linear-three-phase", _one_cycle(anneal_strategy="linear", three_phase=True)),
    Case(
        "SequentialLR-warmup-cosine",
        lambda L, o: L.SequentialLR(
            o,
            [L.LinearLR(o, start_factor=0.1, total_iters=5), L.CosineAnnealingLR(o, T_max=20)],
            milestones=[5],
        ),
    ),
    Case(
        "SequentialLR-three",
        lambda L, o: L.SequentialLR(
            o,
            [L.ConstantLR(o, factor=0.5, total_iters=3), L.ExponentialLR(o, gamma=0.9),
             L.CosineAnnealingWarmRestarts(o, T_0=4)],
            milestones=[4, 9],
        ),
    ),
    Case(
        "ChainedScheduler",
        lambda L, o: L.ChainedScheduler(
            [L.ExponentialLR(o, gamma=0.95), L.StepLR(o, step_size=4, gamma=0.5),
             L.ConstantLR(o, factor=0.5, total_iters=3)]
        ),
    ),
    Case("LambdaLR-traced", lambda L, o: L.LambdaLR(o, lambda e: min(1.0, (e + 1) / 8) * 0.97**e)),
    Case("MultiplicativeLR-traced", lambda L, o: L.MultiplicativeLR(o, lambda e: 0.9 if e % 4 == 0 else 1.02)),
    Case(
        "ScheduleLR",
        lambda L, o: L.ScheduleLR(o, WARMUP_COSINE) if L is schedx_lr else L.LambdaLR(o, WARMUP_COSINE),
    ),
    Case(
        "ReduceLROnPlateau",
        lambda L, o: L.ReduceLROnPlateau(o, patience=2, factor=0.5, cooldown=1, min_lr=1e-3),
        takes_metric=True,
    ),
]


def step(case: Case, scheduler, i: int, metric=None) -> None:
    if case.takes_metric:
        scheduler.step(metric_at(i) if metric is None else metric)
    else:
        scheduler.step()


def make_lrs_and_momenta_tensors(optimizer, use_betas: bool) -> None:
    """Every group's LR and momentum (or betas[0]) as float64 tensors, after a scheduler's construction
    (torch's cycling constructors write floats there)."""
    for g in optimizer.param_groups:
        g["lr"] = torch.tensor(g["lr"], dtype=torch.float64)
        if use_betas:
            g["betas"] = (torch.tensor(g["betas"][0], dtype=torch.float64), g["betas"][1])
        else:
            g["momentum"] = torch.tensor(g["momentum"], dtype=torch.float64)


def lrs_of(optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


def trajectory(case: Case, scheduler, optimizer, steps: int = STEPS) -> list[list[float]]:
    """Every group's LR after each of `steps` steps."""
    out = []
    for i in range(steps):
        step(case, scheduler, i)
        out.append(lrs_of(optimizer))
    return out


def float_path(case: Case, dtype=torch.float64, steps: int = STEPS) -> list[list[float]]:
    """The float-LR trajectory (torch's classes, Python floats starting from the LRs a `dtype` tensor
    holds): every group's LR after every step."""
    opt = make_optimizer("float", dtype)
    return trajectory(case, case.build(torch_lr, opt), opt, steps)


def captured(step_fn, warmup: int = 3) -> "torch.cuda.CUDAGraph":
    """`step_fn` run `warmup` times on a side stream, as torch requires before a capture, then
    captured once in a CUDA graph (capturing runs nothing)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step_fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step_fn()
    return graph


def dynamo_traces_list_identity() -> bool:
    """Whether the installed torch's dynamo traces `a is b` on two lists of dicts of tensors reached from two
    objects in one graph, as a tensor-mode step's check that the param-group list is its program's
    needs (torch 2.5's does not: there the step breaks the graph and runs eagerly)."""
    groups = [{"lr": torch.tensor(0.1)}, {"lr": torch.tensor(0.2)}]
    optimizer, program = types.SimpleNamespace(param_groups=groups), types.SimpleNamespace(groups=groups)
    try:
        torch.compile(
            lambda x: x + (optimizer.param_groups is program.groups), fullgraph=True, backend="eager"
        )(torch.ones(1))
    except torch._dynamo.exc.Unsupported:
        return False
    finally:
        torch._dynamo.reset()
    return True


TORCH, SCHEDX = torch_lr, schedx_lr
