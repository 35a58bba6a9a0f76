"""A step that meets Python code in its middle never crashes, and gives what torch's twin gives.

Python code runs wherever a step lets go of an object (its finalizer), allocates a tracked object (the
garbage collector), looks up a user's key, or calls a user's function. The engine keeps no borrowed
reference, pointer or size across such a point (csrc/families/, csrc/py/), and it does not replace, in its
fused pass, an object whose release could run Python code: that step is left to torch's code, which
lets it go at torch's point of the step. So each case here puts an object with a ``__del__`` where a
step replaces it (a `_last_lr` entry of the scheduler or of a chained or sequential child, a group's
momentum or betas, the `_get_lr_called_within_step` flag), on a torch twin and on schedx alike; the
finalizer changes the optimizer or the scheduler (deletes or adds param groups, replaces the group
dicts, clears or replaces `_last_lr`, steps the scheduler again); then both step once more, and the
outcome (exception type), every group's values, `_last_lr` (children's included) and the counters must
be the same. Before this was enforced, the chained cases crashed the interpreter (a refill writing past
the end of a list) and the others gave other values or counters than torch.
"""
from __future__ import annotations

import warnings
import weakref

import pytest
import torch
import torch.optim.lr_scheduler as torch_lr
import torch.optim.swa_utils as torch_swa

import schedx.lr_scheduler as schedx_lr
import schedx.swa_utils as schedx_swa
from schedx import schedules

N_GROUPS = 4
WARMUP_COSINE = schedules.warmup(3, schedules.cosine(end=0.05, steps=40))


def _swalr(L, opt):
    swa = torch_swa if L is torch_lr else schedx_swa
    return swa.SWALR(opt, swa_lr=0.05, anneal_epochs=5)


# Every class whose plain step runs in the engine, built alike from torch's module or schedx's.
BUILDERS = {
    "StepLR": lambda L, o: L.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda L, o: L.MultiStepLR(o, milestones=[2, 4, 5], gamma=0.5),
    "ConstantLR": lambda L, o: L.ConstantLR(o, factor=0.5, total_iters=5),
    "LinearLR": lambda L, o: L.LinearLR(o, start_factor=0.5, total_iters=5),
    "ExponentialLR": lambda L, o: L.ExponentialLR(o, gamma=0.9),
    "PolynomialLR": lambda L, o: L.PolynomialLR(o, total_iters=8, power=2.0),
    "CosineAnnealingLR": lambda L, o: L.CosineAnnealingLR(o, T_max=8),
    "ChainedScheduler": lambda L, o: L.ChainedScheduler(
        [L.StepLR(o, step_size=2, gamma=0.5), L.ExponentialLR(o, gamma=0.9)]
    ),
    "SequentialLR": lambda L, o: L.SequentialLR(
        o, [L.ExponentialLR(o, gamma=0.9), L.StepLR(o, step_size=2)], milestones=[20]
    ),
    "ReduceLROnPlateau": lambda L, o: L.ReduceLROnPlateau(o, patience=0, factor=0.5),
    "OneCycleLR": lambda L, o: L.OneCycleLR(o, max_lr=1.0, total_steps=100),
    "CyclicLR": lambda L, o: L.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3),
    "CosineAnnealingWarmRestarts": lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=3),
    "LambdaLR": lambda L, o: L.LambdaLR(o, lambda e: 0.9**e),
    "MultiplicativeLR": lambda L, o: L.MultiplicativeLR(o, lambda e: 0.9),
    "SWALR": _swalr,
    # schedx's own class; its torch twin is LambdaLR with the schedule as the lambda.
    "ScheduleLR": lambda L, o: (
        L.ScheduleLR(o, WARMUP_COSINE) if L is schedx_lr else L.LambdaLR(o, WARMUP_COSINE)
    ),
}
COMPOSITES = ("ChainedScheduler", "SequentialLR")
CYCLES_MOMENTUM = ("OneCycleLR", "CyclicLR")


def make_optimizer(kind: str = "sgd", n_groups: int = N_GROUPS) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 * (k + 1)} for k in range(n_groups)]
    if kind == "adam":
        return torch.optim.Adam(params, lr=0.1)
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def step(sched, metric: float = 1.0) -> None:
    if isinstance(sched, torch_lr.ReduceLROnPlateau):
        sched.step(metric)
    else:
        sched.step()


class Finalizer:
    """Runs `action(optimizer, scheduler)` when it is let go of (weak references: it keeps neither)."""

    def __init__(self, action, optimizer, scheduler):
        self.action = action
        self.optimizer = weakref.ref(optimizer)
        self.scheduler = weakref.ref(scheduler)

    def __del__(self):
        optimizer, scheduler = self.optimizer(), self.scheduler()
        if optimizer is not None and scheduler is not None:
            self.action(optimizer, scheduler)


def _new_group(optimizer) -> None:
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.7})


# What a finalizer does to the optimizer or the scheduler.
ACTIONS = {
    "drops_groups": lambda o, s: o.param_groups.__delitem__(slice(1, None)),
    "adds_a_group": lambda o, s: _new_group(o),
    "replaces_group_dicts": lambda o, s: o.param_groups.__setitem__(
        slice(None), [dict(g) for g in o.param_groups]
    ),
    "clears_last_lr": lambda o, s: s._last_lr.clear(),
    "replaces_last_lr": lambda o, s: setattr(s, "_last_lr", [0.5]),
    "steps_again": lambda o, s: step(s, 2.0),
}


def _children(sched) -> list:
    return list(getattr(sched, "_schedulers", []))


# Where a finalizer is put: in each case, an object the next plain step replaces.
def _in_last_lr(o, s, fin):
    s._last_lr[1] = fin


def _in_children_last_lr(o, s, fin):
    for child in _children(s):
        child._last_lr[1] = fin(child)


def _in_momentum(o, s, fin):
    o.param_groups[1]["momentum"] = fin


def _in_betas(o, s, fin):
    o.param_groups[1]["betas"] = (fin, 0.999)


def _in_flag(o, s, fin):
    s._get_lr_called_within_step = fin


PLACES = {
    "last_lr": _in_last_lr,
    "children_last_lr": _in_children_last_lr,
    "momentum": _in_momentum,
    "betas": _in_betas,
    "get_lr_flag": _in_flag,
}


def _applies(name: str, place: str) -> bool:
    if place == "children_last_lr":
        return name in COMPOSITES
    if place in ("momentum", "betas"):
        return name in CYCLES_MOMENTUM
    if place == "get_lr_flag":
        return name not in COMPOSITES + ("ReduceLROnPlateau",)
    return True


CASES = [(name, place) for name in BUILDERS for place in PLACES if _applies(name, place)]


def _comparable(value):
    """`value` with each Finalizer (one per twin, so never equal) as a marker."""
    if isinstance(value, Finalizer):
        return "a Finalizer"
    if isinstance(value, (list, tuple)):
        return type(value)(_comparable(v) for v in value)
    return value


def _state(opt, sched) -> dict:
    """What a step leaves behind: every group's values, `_last_lr` (children's too) and counters."""
    keys = ("lr", "momentum", "betas")
    return {
        "groups": [{k: _comparable(g[k]) for k in keys if k in g} for g in opt.param_groups],
        "last_lr": _comparable(sched.__dict__.get("_last_lr")),
        "children_last_lr": [_comparable(c.__dict__.get("_last_lr")) for c in _children(sched)],
        "counters": [
            (s.__dict__.get("last_epoch"), s.__dict__.get("_step_count"))
            for s in [sched, *_children(sched)]
        ],
    }


def _outcome(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - compared with torch's
        return type(e)
    return None


def _run(L, name: str, place: str, action: str) -> list:
    """Builds the scheduler with module L, steps it past its first step, places the finalizer, steps
    twice more; the outcome and the state after each of those two steps."""
    opt = make_optimizer("adam" if place == "betas" else "sgd")
    sched = BUILDERS[name](L, opt)
    for _ in range(2):
        step(sched)
    if place == "children_last_lr":
        PLACES[place](opt, sched, lambda child: Finalizer(ACTIONS[action], opt, child))
    else:
        PLACES[place](opt, sched, Finalizer(ACTIONS[action], opt, sched))
    record = []
    for _ in range(2):
        record.append((_outcome(lambda: step(sched)), _state(opt, sched)))
    return record


@pytest.mark.parametrize("name,place", CASES, ids=["-".join(c) for c in CASES])
def test_finalizers_run_by_a_step_give_torchs_results(name, place):
    for action in ACTIONS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = _run(torch_lr, name, place, action)
            got = _run(schedx_lr, name, place, action)
        assert got == expected, action


def _chain_whose_child_drops_groups(L, subclassed: bool = False):
    """The issue's example: a ChainedScheduler whose child's `_last_lr` holds an object whose
    finalizer deletes param groups and gives the chain a `_last_lr` of the new group count. Its
    children of the user's subclasses (`subclassed`), which the engine reads through their attributes."""
    opt = make_optimizer(n_groups=64)
    if subclassed:
        chain = L.ChainedScheduler([type("MyStepLR", (L.StepLR,), {})(opt, step_size=2, gamma=0.5),
                                    type("MyExponentialLR", (L.ExponentialLR,), {})(opt, gamma=0.9)])
    else:
        chain = BUILDERS["ChainedScheduler"](L, opt)
    for _ in range(2):
        chain.step()

    def drop_groups(o, s):
        del o.param_groups[1:]
        chain._last_lr = [0.5]

    for k in range(64):
        chain._schedulers[-1]._last_lr[k] = Finalizer(drop_groups, opt, chain)
    chain.step()
    return _state(opt, chain)


@pytest.mark.parametrize("subclassed", [False, True], ids=["schedx classes", "user subclasses"])
def test_chain_step_whose_child_finalizer_drops_groups_gives_torchs_result(subclassed):
    # Before: the chain refilled its own one-item list with the last child's 64 LRs (a segfault); with
    # children of a user's subclasses, it gave the 64 LRs the pass computed before the finalizer ran.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schedx_state = _chain_whose_child_drops_groups(schedx_lr, subclassed)
        assert schedx_state == _chain_whose_child_drops_groups(torch_lr, subclassed)
