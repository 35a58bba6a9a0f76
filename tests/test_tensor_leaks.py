"""A deleted scheduler is freed as torch's is: by reference counting alone, in every mode (float LRs,
tensor LRs in tensor mode, composites, traced lambdas), with its optimizer and all the optimizer holds.
Each test runs with the cyclic garbage collector off and compares with torch's twin."""
from __future__ import annotations

import gc
import weakref

import pytest
import torch

from tensor_cases import (
    CASES,
    SCHEDX,
    TORCH,
    dynamo_traces_list_identity,
    lrs_of,
    make_lrs_and_momenta_tensors,
    make_optimizer,
    step,
)

pytestmark = pytest.mark.filterwarnings("ignore")
CASE_IDS = [c.name for c in CASES]


@pytest.fixture(autouse=True)
def no_cyclic_gc():
    # torch's first optimizer in a process stays alive (a frame of its lazy set-up keeps it): build one
    # before any measurement.
    make_optimizer("float").step()
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def freed_after_del(make, run) -> list[bool]:
    """Whether the scheduler and its optimizer are gone right after `del`: `make()` gives (optimizer,
    scheduler), `run(scheduler)` steps it."""
    optimizer, scheduler = make()
    run(scheduler)
    refs = [weakref.ref(scheduler), weakref.ref(optimizer)]
    del optimizer, scheduler
    return [ref() is None for ref in refs]


def steps(case, n=6):
    def run(scheduler):
        for i in range(n):
            step(case, scheduler, i)

    return run


def built(case, lib, lr_kind):
    def make():
        optimizer = make_optimizer(lr_kind)
        return optimizer, case.build(lib, optimizer)

    return make


def in_tensor_mode(scheduler) -> bool:
    return "_tensor_program" in scheduler.__dict__


@pytest.mark.parametrize("lr_kind", ["float", "tensor"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_deleted_scheduler_and_its_optimizer_are_freed_by_reference_counting(case, lr_kind):
    expected = freed_after_del(built(case, TORCH, lr_kind), steps(case))
    assert expected == [True, True]
    assert freed_after_del(built(case, SCHEDX, lr_kind), steps(case)) == expected


def _cycling_momentum(lib, use_betas: bool):
    """OneCycleLR over Adam's betas or CyclicLR over SGD's momentum; the LRs and momenta become
    float64 tensors after the first step (torch's own: before torch 2.9, whole, assigning floats)."""

    def make():
        params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(3)]
        groups = [{"params": [p], "lr": 0.01 * (k + 1)} for k, p in enumerate(params)]
        if use_betas:
            optimizer = torch.optim.Adam(groups)
            scheduler = lib.OneCycleLR(optimizer, max_lr=0.3, total_steps=40)
        else:
            optimizer = torch.optim.SGD(groups, momentum=0.9)
            scheduler = lib.CyclicLR(optimizer, 0.01, 0.1, step_size_up=4)
        scheduler.step()
        make_lrs_and_momenta_tensors(optimizer, use_betas)
        return optimizer, scheduler

    return make


@pytest.mark.parametrize("use_betas", [True, False], ids=["OneCycleLR-betas", "CyclicLR-momentum"])
def test_a_scheduler_cycling_momentum_tensors_is_freed_by_reference_counting(use_betas):
    def run(scheduler):
        for _ in range(6):
            scheduler.step()
        if scheduler.__class__.__module__.startswith("schedx"):
            assert scheduler.__dict__["_tensor_program"].momenta is not None

    expected = freed_after_del(_cycling_momentum(TORCH, use_betas), run)
    assert freed_after_del(_cycling_momentum(SCHEDX, use_betas), run) == expected == [True, True]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_scheduler_given_a_state_dict_in_tensor_mode_is_freed_by_reference_counting(case):
    def run(scheduler):
        steps(case)(scheduler)
        scheduler.load_state_dict(scheduler.state_dict())
        steps(case)(scheduler)
        if scheduler.__class__.__module__.startswith("schedx"):
            assert in_tensor_mode(scheduler) == case.has_program

    expected = freed_after_del(built(case, TORCH, "tensor"), run)
    assert freed_after_del(built(case, SCHEDX, "tensor"), run) == expected == [True, True]


@pytest.mark.parametrize("name", ["ChainedScheduler", "SequentialLR-warmup-cosine"])
def test_a_deleted_composite_is_freed_while_its_child_steps_on(name):
    case = next(c for c in CASES if c.name == name)
    results = []
    for lib in (TORCH, SCHEDX):
        optimizer = make_optimizer("tensor")
        composite = case.build(lib, optimizer)
        steps(case)(composite)
        child = composite._schedulers[-1]
        ref = weakref.ref(composite)
        del composite
        freed = ref() is None
        child.step()
        results.append((freed, child.last_epoch, lrs_of(optimizer)))
    assert results[1] == results[0]
    assert results[1][0]


class Trainer:
    """An object holding the scheduler whose lambda refers back to it: a reference cycle, which torch
    leaves to the cyclic garbage collector."""

    def __init__(self, lib, lr_kind: str, factor: str):
        self.optimizer = make_optimizer(lr_kind)
        self.scheduler = lib.LambdaLR(self.optimizer, getattr(self, factor)())

    def method(self):
        return self.factor

    def factor(self, epoch):
        return 0.9**epoch

    def traced_with_default(self):
        # A lambda schedx traces; its default argument (unused) keeps the trainer alive.
        return lambda epoch, _owner=self: 0.9**epoch

    def traced_with_closure(self):
        # A lambda schedx traces; the cell of its free variable keeps the trainer alive.
        owner = self
        return lambda epoch: 0.9**epoch if owner is not None else 1.0


@pytest.mark.parametrize("factor", ["traced_with_default", "traced_with_closure", "method"])
@pytest.mark.parametrize("lr_kind", ["float", "tensor"])
def test_a_lambda_scheduler_in_a_reference_cycle_is_collected_as_torchs(lr_kind, factor):
    results = []
    for lib in (TORCH, SCHEDX):
        trainer = Trainer(lib, lr_kind, factor)
        for _ in range(6):
            trainer.scheduler.step()
        refs = [weakref.ref(trainer.scheduler), weakref.ref(trainer.optimizer)]
        del trainer
        freed_by_counting = [ref() is None for ref in refs]
        gc.collect()
        results.append((freed_by_counting, [ref() is None for ref in refs]))
    assert results[1] == results[0] == ([False, False], [True, True])


@pytest.mark.skipif(not dynamo_traces_list_identity(),
                    reason="this torch's dynamo breaks the graph at the step, and its bookkeeping of the break "
                    "keeps the frame under pytest (freed when run alone)")
def test_a_scheduler_stepped_by_torch_compile_is_freed_by_reference_counting():
    def run(scheduler):
        for _ in range(2):
            scheduler.step()
        compiled = torch.compile(scheduler.step, backend="aot_eager")
        for _ in range(3):
            compiled()
        torch._dynamo.reset()  # drops the compiled code, which refers to the scheduler

    case = next(c for c in CASES if c.name == "CosineAnnealingLR")
    expected = freed_after_del(built(case, TORCH, "tensor"), run)
    assert freed_after_del(built(case, SCHEDX, "tensor"), run) == expected == [True, True]
