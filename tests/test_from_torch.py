"""schedx.from_torch(): a live torch scheduler (fresh, mid-run, just loaded from a checkpoint,
composites with their children, transformers' LambdaLRs) becomes schedx's, on the same optimizer with
the same state; every later step, get_last_lr() and state_dict() is the torch twin's."""
from __future__ import annotations

import copy
import gc
import types
import weakref

import pytest
import torch

import schedx
from twins import ALL_NAMES, CANONICAL, COMPOSITE_NAMES, SCHEDX, TORCH, Custom, Sched, Twins, make_optimizer


def convert_second_twin(twins):
    """Replaces the second twin's torch scheduler by from_torch's conversion of it."""
    torch_scheduler = twins.b.sched
    twins.b.sched, twins.b.impl = schedx.from_torch(torch_scheduler), SCHEDX
    return torch_scheduler


def run(twins, steps=12):
    for _ in range(steps):
        twins.optimizer_step()
        twins.step()


@pytest.mark.parametrize("steps_before", [0, 5], ids=["fresh", "mid-run"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_converted_scheduler_steps_as_torchs(name, steps_before):
    twins = Twins(CANONICAL[name], impl_b=TORCH)
    run(twins, steps_before)
    torch_scheduler = convert_second_twin(twins)
    assert type(twins.b.sched) is getattr(SCHEDX, name)
    assert twins.b.sched.optimizer is torch_scheduler.optimizer
    twins.check("converted")
    run(twins)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_scheduler_just_loaded_from_a_checkpoint_converts(name):
    twins = Twins(CANONICAL[name], impl_b=TORCH)
    run(twins, 4)
    # The second twin resumes into a fresh torch scheduler from a weights_only checkpoint.
    twins.handover(only_b=True, serialize=True, to=TORCH)
    convert_second_twin(twins)
    run(twins)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_converted_schedulers_checkpoint_loads_into_torchs_class(name):
    twins = Twins(CANONICAL[name], impl_b=TORCH)
    run(twins, 3)
    convert_second_twin(twins)
    run(twins, 3)
    twins.handover(serialize=True)  # through torch.load(weights_only=True), each way
    run(twins)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_scheduler_on_tensor_lrs_converts(name):
    twins = Twins(CANONICAL[name], kind="adam", lrs=[torch.tensor(0.1), torch.tensor(0.03)], impl_b=TORCH)
    run(twins, 3)
    convert_second_twin(twins)
    run(twins)


def test_a_composite_nested_in_a_composite_converts():
    nested = Sched(
        "ChainedScheduler",
        children=[CANONICAL["SequentialLR"], Sched("ExponentialLR", gamma=0.9)],
    )
    twins = Twins(nested, impl_b=TORCH)
    run(twins, 4)
    convert_second_twin(twins)
    assert type(twins.b.sched._schedulers[0]._schedulers[1]) is schedx.CosineAnnealingLR
    run(twins)


@pytest.mark.parametrize("child", ["LambdaLR", "StepLR"])
def test_a_child_a_composite_holds_twice_is_converted_once(child):
    def twice(impl, optimizer):
        shared = impl.LambdaLR(optimizer, lambda e: 0.9**e) if child == "LambdaLR" else impl.StepLR(optimizer, 2, 0.5)
        return impl.ChainedScheduler([shared, shared])  # torch steps it twice a step

    twins = Twins(Custom("ChainedScheduler([child, child])", twice), impl_b=TORCH)
    run(twins, 2)
    convert_second_twin(twins)
    first, second = twins.b.sched._schedulers
    assert first is second
    run(twins)


@pytest.mark.parametrize("name", COMPOSITE_NAMES)
def test_a_composites_children_are_converted(name):
    torch_scheduler = CANONICAL[name].build(TORCH, make_optimizer())
    converted = schedx.from_torch(torch_scheduler)
    assert [type(child) for child in converted._schedulers] == [
        getattr(SCHEDX, type(child).__name__) for child in torch_scheduler._schedulers
    ]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_stepping_the_converted_scheduler_leaves_the_torch_one_as_it_was(name):
    optimizer = make_optimizer()
    torch_scheduler = CANONICAL[name].build(TORCH, optimizer)
    before = copy.deepcopy(torch_scheduler.state_dict())
    converted = schedx.from_torch(torch_scheduler)
    for step in range(6):
        optimizer.step()
        converted.step(float(step)) if name == "ReduceLROnPlateau" else converted.step()
    assert torch_scheduler.state_dict() == before


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n not in COMPOSITE_NAMES])
def test_an_in_place_edit_of_the_converted_schedulers_lists_leaves_the_torch_one_as_it_was(name):
    torch_scheduler = CANONICAL[name].build(TORCH, make_optimizer())
    before = copy.deepcopy(torch_scheduler.state_dict())
    converted = schedx.from_torch(torch_scheduler)
    for value in vars(converted).values():
        if isinstance(value, list) and value:
            value[0] = 0.5
    assert torch_scheduler.state_dict() == before


def transformers_schedules():
    transformers = pytest.importorskip("transformers")
    return {
        "linear": lambda o: transformers.get_linear_schedule_with_warmup(o, 3, 12),
        "cosine": lambda o: transformers.get_cosine_schedule_with_warmup(o, 3, 12),
        "cosine_with_restarts": lambda o: transformers.get_cosine_with_hard_restarts_schedule_with_warmup(
            o, 3, 12, num_cycles=2
        ),
        "polynomial": lambda o: transformers.get_polynomial_decay_schedule_with_warmup(o, 3, 12, power=2.0),
        "constant_with_warmup": lambda o: transformers.get_constant_schedule_with_warmup(o, 3),
        "inverse_sqrt": lambda o: transformers.get_inverse_sqrt_schedule(o, 3),
        "wsd": lambda o: transformers.get_wsd_schedule(o, 3, 4, num_training_steps=12),
    }


@pytest.mark.parametrize(
    "schedule", ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant_with_warmup",
                 "inverse_sqrt", "wsd"]
)
def test_a_transformers_lambda_lr_converts(schedule):
    build = transformers_schedules()[schedule]

    class Spec:
        name, takes_metric = schedule, False

        def build(self, impl, optimizer, **overrides):
            return build(optimizer)

        def __repr__(self):
            return schedule

    twins = Twins(Spec(), impl_b=TORCH)
    run(twins, 2)
    convert_second_twin(twins)
    assert type(twins.b.sched) is schedx.LambdaLR
    run(twins, 14)


def test_a_method_bound_to_the_torch_scheduler_is_bound_to_the_converted_one():
    def halving_at_even_epochs(self):
        factor = 0.5 if self.last_epoch % 2 == 0 else 1.0
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def with_instance_get_lr(impl, optimizer):
        scheduler = impl.StepLR(optimizer, step_size=2)
        scheduler.get_lr = types.MethodType(halving_at_even_epochs, scheduler)
        return scheduler

    twins = Twins(Custom("StepLR with get_lr set on the instance", with_instance_get_lr), impl_b=TORCH)
    run(twins, 3)
    torch_scheduler = convert_second_twin(twins)
    assert twins.b.sched.get_lr.__self__ is twins.b.sched
    run(twins)
    assert torch_scheduler.last_epoch == 3


def test_a_schedx_scheduler_comes_back_as_it_is():
    scheduler = schedx.StepLR(make_optimizer(), step_size=2)
    assert schedx.from_torch(scheduler) is scheduler


class HalvingStepLR(TORCH.StepLR):
    def get_lr(self):
        return [group["lr"] * 0.5 for group in self.optimizer.param_groups]


def test_a_user_subclass_of_a_torch_class_is_refused_with_the_reason():
    with pytest.raises(TypeError, match=r"HalvingStepLR is a subclass of torch\.optim\.lr_scheduler\.StepLR.*"
                       r"derive it from schedx\.StepLR"):
        schedx.from_torch(HalvingStepLR(make_optimizer(), step_size=2))


def test_a_composite_with_a_user_subclass_child_is_refused():
    optimizer = make_optimizer()
    chained = TORCH.ChainedScheduler([TORCH.ExponentialLR(optimizer, 0.9), HalvingStepLR(optimizer, 2)])
    with pytest.raises(TypeError, match="HalvingStepLR"):
        schedx.from_torch(chained)


def test_an_object_that_is_no_torch_scheduler_is_refused():
    with pytest.raises(TypeError, match="object is not one of torch's sixteen classes"):
        schedx.from_torch(object())


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_converted_scheduler_is_freed_without_the_collector(name):
    def converted_and_stepped():
        optimizer = make_optimizer()
        torch_scheduler = CANONICAL[name].build(TORCH, optimizer)
        converted = schedx.from_torch(torch_scheduler)
        for _ in range(3):
            optimizer.step()
            converted.step(1.0) if name == "ReduceLROnPlateau" else converted.step()
        return weakref.ref(torch_scheduler), weakref.ref(converted), weakref.ref(optimizer)

    converted_and_stepped()  # the first run in a process can leave caches referring to it
    gc.disable()
    try:
        refs = converted_and_stepped()
        assert [ref() for ref in refs] == [None, None, None]
    finally:
        gc.enable()
