"""schedx.patch() / unpatch() / patched(): torch's scheduler names build schedx's classes, every
isinstance / issubclass check answers as without the patch, and unpatching puts back exactly what was
there. Torch's own scheduler test patterns hold for the classes taken from torch's modules while
patched, against torch's original classes as twins.

torch's original classes are held in dicts here (twins.TORCH, ORIGINAL), never as module globals:
patch() rebinds every module global that is one of them."""
from __future__ import annotations

import doctest
import gc
import inspect
import sys
import types
import weakref

import pytest
import torch
import torch.optim.lr_scheduler as torch_lr
import torch.optim.swa_utils as torch_swa

import schedx
import schedx._patch
from twins import ALL_NAMES, CANONICAL, SCHEDX, TORCH, Impl, Twins, make_optimizer

ORIGINAL = dict(TORCH.classes)


def torch_module_of(name):
    return torch_swa if name == "SWALR" else torch_lr


def name_in_torch(name):
    """What torch's module holds under `name` now."""
    return getattr(torch_module_of(name), name)


@pytest.fixture
def unpatched_after():
    """Leaves torch's modules unpatched, whatever the test did."""
    yield
    schedx.unpatch()


def test_patch_makes_torchs_names_build_schedxs_classes(unpatched_after):
    schedx.patch()
    patched = Impl("patched torch", torch_lr, torch_swa)
    for name in ALL_NAMES:
        scheduler = CANONICAL[name].build(patched, make_optimizer())
        assert type(scheduler) is getattr(SCHEDX, name), name


def test_patch_rebinds_no_base_class_and_adds_no_name(unpatched_after):
    before = {m: dict(vars(m)) for m in (torch_lr, torch_swa)}
    schedx.patch()
    for module, names in before.items():
        assert vars(module).keys() == names.keys()
        changed = {n for n, v in vars(module).items() if v is not names[n]}
        assert changed == {n for n in ALL_NAMES if torch_module_of(n) is module}
    assert torch_lr.LRScheduler is ORIGINAL["StepLR"].__mro__[1]
    assert torch_swa.LRScheduler is torch_lr.LRScheduler


def test_unpatch_puts_back_every_object_of_torchs_modules():
    before = {m: dict(vars(m)) for m in (torch_lr, torch_swa)}
    schedx.patch()
    schedx.unpatch()
    for module, names in before.items():
        now = vars(module)
        assert now.keys() == names.keys()
        assert all(now[n] is v for n, v in names.items())


def test_patching_twice_is_harmless(unpatched_after):
    schedx.patch()
    once = {n: name_in_torch(n) for n in ALL_NAMES}
    schedx.patch()
    assert {n: name_in_torch(n) for n in ALL_NAMES} == once
    assert type(torch_lr.StepLR(make_optimizer(), step_size=2)) is schedx.StepLR
    schedx.unpatch()
    assert all(name_in_torch(n) is ORIGINAL[n] for n in ALL_NAMES)


def test_unpatch_without_a_patch_changes_nothing():
    schedx.unpatch()
    assert all(name_in_torch(n) is ORIGINAL[n] for n in ALL_NAMES)
    assert not schedx.is_patched()


def test_patched_patches_for_the_block_only():
    with schedx.patched():
        assert schedx.is_patched()
        assert type(torch_lr.ExponentialLR(make_optimizer(), gamma=0.9)) is schedx.ExponentialLR
    assert not schedx.is_patched()
    assert all(name_in_torch(n) is ORIGINAL[n] for n in ALL_NAMES)


def test_patched_leaves_a_patch_it_found_in_place(unpatched_after):
    schedx.patch()
    with schedx.patched():
        pass
    assert schedx.is_patched()
    assert type(torch_lr.StepLR(make_optimizer(), step_size=2)) is schedx.StepLR


def test_patched_unpatches_when_the_block_raises():
    with pytest.raises(RuntimeError, match="inside"):
        with schedx.patched():
            raise RuntimeError("inside")
    assert all(name_in_torch(n) is ORIGINAL[n] for n in ALL_NAMES)


def fake_module(name, **globals_):
    module = types.ModuleType(name)
    module.__dict__.update(globals_)
    return module


def test_patch_rebinds_names_a_module_imported_from_torch_and_unpatch_restores_them(monkeypatch):
    # As transformers.optimization's `from torch.optim.lr_scheduler import LambdaLR`.
    module = fake_module("imported_before", LambdaLR=ORIGINAL["LambdaLR"], SWALR=ORIGINAL["SWALR"])
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with schedx.patched():
        assert type(module.LambdaLR(make_optimizer(), lambda e: 0.5)) is schedx.LambdaLR
        assert type(module.SWALR(make_optimizer(), swa_lr=0.01)) is schedx.SWALR
    assert module.LambdaLR is ORIGINAL["LambdaLR"] and module.SWALR is ORIGINAL["SWALR"]


def test_unpatch_restores_torchs_classes_in_a_module_imported_while_patched(monkeypatch):
    with schedx.patched():
        module = fake_module("imported_while_patched", StepLR=torch_lr.StepLR)
        monkeypatch.setitem(sys.modules, module.__name__, module)
    assert module.StepLR is ORIGINAL["StepLR"]


def test_a_name_rebound_by_the_user_while_patched_is_left_to_them(monkeypatch, unpatched_after):
    schedx.patch()
    monkeypatch.setattr(torch_lr, "StepLR", schedx.StepLR)
    schedx.unpatch()
    assert torch_lr.StepLR is schedx.StepLR


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_patched_name_has_torchs_signature_and_name(name, unpatched_after):
    schedx.patch()
    patched, original = name_in_torch(name), ORIGINAL[name]
    assert inspect.signature(patched) == inspect.signature(original)
    assert (patched.__module__, patched.__qualname__) == (original.__module__, original.__qualname__)


def test_a_class_written_against_a_patched_name_has_its_own_signature(unpatched_after):
    schedx.patch()

    class Warmup(torch_lr.LinearLR):
        def __init__(self, optimizer, warmup_steps: int):
            super().__init__(optimizer, start_factor=0.1, total_iters=warmup_steps)

    assert list(inspect.signature(Warmup).parameters) == ["optimizer", "warmup_steps"]
    assert type(Warmup(make_optimizer(), 3)) is Warmup


# --- isinstance / issubclass ------------------------------------------------------------------------
#
# Every check against torch's names (resolved when checked) answers with the patch as without it:
# for schedulers torch built before the patch, schedx's, those built through torch's names (torch's
# unpatched, schedx's patched), and user subclasses written before the patch or while patched.

CHECKED_NAMES = ("StepLR", "ExponentialLR", "LRScheduler", "_LRScheduler")


class UserStepLR(ORIGINAL["StepLR"]):
    """A user's subclass of torch's StepLR, written before any patch."""


def build_objects():
    """The schedulers and classes of the table, built through torch's names as they are bound now."""
    optimizer = make_optimizer()

    class WrittenNow(torch_lr.StepLR):  # a user's subclass, written now (against a patched name or not)
        pass

    return {
        "torch's StepLR": ORIGINAL["StepLR"](optimizer, step_size=2),
        "schedx's StepLR": schedx.StepLR(optimizer, step_size=2),
        "built through torch's name": torch_lr.StepLR(optimizer, step_size=2),
        "user subclass written before": UserStepLR(optimizer, step_size=2),
        "user subclass written now": WrittenNow(optimizer, step_size=2),
    }


def answers(objects):
    table = {}
    for label, obj in objects.items():
        for name in CHECKED_NAMES:
            table[label, f"isinstance torch's {name}"] = isinstance(obj, getattr(torch_lr, name))
            table[label, f"issubclass torch's {name}"] = issubclass(type(obj), getattr(torch_lr, name))
    return table


def test_isinstance_and_issubclass_against_torchs_names_answer_as_without_the_patch(unpatched_after):
    unpatched = answers(build_objects())
    schedx.patch()
    assert answers(build_objects()) == unpatched


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_patched_name_is_a_subclass_of_what_torchs_class_is_a_subclass_of(name, unpatched_after):
    # As LightningCLI checks a configured class: issubclass(cls, (LRScheduler, ReduceLROnPlateau)).
    original = ORIGINAL[name]
    others = [cls for cls in ORIGINAL.values() if not issubclass(original, cls)]
    schedx.patch()
    patched = name_in_torch(name)
    assert all(issubclass(patched, base) for base in original.__mro__)
    assert not any(issubclass(patched, cls) for cls in others)


def test_isinstance_of_a_scheduler_torch_built_before_the_patch_holds_while_patched(unpatched_after):
    built_before = {name: CANONICAL[name].build(TORCH, make_optimizer()) for name in ALL_NAMES}
    schedx.patch()
    for name, scheduler in built_before.items():
        assert isinstance(scheduler, name_in_torch(name))
        assert isinstance(scheduler, torch_lr.LRScheduler)
        assert not isinstance(scheduler, getattr(SCHEDX, name))


def test_schedulers_built_through_torchs_names_while_patched_are_schedxs(unpatched_after):
    schedx.patch()
    objects = build_objects()
    assert isinstance(objects["built through torch's name"], schedx.StepLR)
    assert isinstance(objects["user subclass written now"], schedx.StepLR)
    assert not isinstance(objects["user subclass written before"], schedx.StepLR)


def test_a_class_written_against_torchs_name_while_patched_keeps_its_get_lr(unpatched_after):
    def halving(base):
        class Halving(base):
            def get_lr(self):
                return [group["lr"] * 0.5 for group in self.optimizer.param_groups]

        return Halving

    expected = halving(ORIGINAL["StepLR"])
    schedx.patch()
    written_while_patched = halving(torch_lr.StepLR)
    twins = Twins(
        _Custom(lambda impl, o: (expected if impl is TORCH else written_while_patched)(o, step_size=2)),
        impl_b=SCHEDX,
    )
    for _ in range(5):
        twins.optimizer_step()
        twins.step()


class _Custom:
    """A Twins spec from a function of (impl, optimizer)."""

    name = "custom"
    takes_metric = False

    def __init__(self, factory):
        self.factory = factory

    def build(self, impl, optimizer, **overrides):
        return self.factory(impl, optimizer)

    def __repr__(self):
        return "custom"


# --- torch's test patterns, with the classes taken from torch's modules while patched ---------------


@pytest.fixture
def patched_torch(unpatched_after):
    """torch's classes as its modules hold them while patched."""
    schedx.patch()
    return Impl("patched torch", torch_lr, torch_swa)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_patched_scheduler_steps_warns_and_checkpoints_as_torchs(name, patched_torch):
    # Twins compares values, warnings, get_last_lr() and state_dict() after every action.
    twins = Twins(CANONICAL[name], impl_b=patched_torch)
    twins.step()  # before optimizer.step(): torch's order warning
    for _ in range(4):
        twins.optimizer_step()
        twins.step()
    twins.get_lr()  # outside step(): torch's warning
    if twins.spec.accepts_epoch:
        twins.step_epoch(7)  # the deprecated step(epoch): torch's warning and closed form
    # Both ways through torch.save / torch.load(weights_only=True): each side goes on as the other
    # class (the patched side as torch's original, the torch side as schedx's).
    twins.handover(serialize=True)
    for _ in range(4):
        twins.optimizer_step()
        twins.step()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_patched_scheduler_warns_as_torchs_when_optimizer_step_was_replaced(name, patched_torch):
    twins = Twins(CANONICAL[name], impl_b=patched_torch)
    twins.both(lambda side: setattr(side.opt, "step", lambda closure=None: None), "optimizer.step replaced")
    twins.optimizer_step()
    twins.step()  # torch: "Seems like `optimizer.step()` has been overridden ..."


def scheduler_freed_without_the_collector(build, steps):
    """torch's test_no_cyclic_references_in_step: with the collector off, a scheduler that stepped
    is freed as soon as it is dropped."""

    def run():
        optimizer = make_optimizer()
        scheduler = build(optimizer)
        for _ in range(steps):
            optimizer.step()
            scheduler.step(1.0) if isinstance(scheduler, torch_lr.ReduceLROnPlateau) else scheduler.step()
        return weakref.ref(scheduler), weakref.ref(optimizer)

    gc.disable()
    try:
        refs = run()
        return all(ref() is None for ref in refs)
    finally:
        gc.enable()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_patched_scheduler_is_freed_without_the_collector_as_torchs_is(name, patched_torch):
    spec = CANONICAL[name]
    for impl in (TORCH, patched_torch):
        # The first run in a process can leave caches (torch's and Python's) referring to it.
        scheduler_freed_without_the_collector(lambda o: spec.build(impl, o), steps=3)
        assert scheduler_freed_without_the_collector(lambda o: spec.build(impl, o), steps=3), impl


def test_the_docstring_examples_give_what_they_show():
    results = doctest.testmod(schedx._patch, optionflags=doctest.ELLIPSIS, verbose=False, report=True)
    assert results.attempted > 0
    assert results.failed == 0
