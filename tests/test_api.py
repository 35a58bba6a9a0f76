"""The public surface is torch's: types, names, signatures, validation errors -- and the compiled
engine is what actually runs a step."""

from __future__ import annotations

import importlib.machinery
import inspect
import sys
import types

import pytest
import torch.optim.lr_scheduler as torch_lr

import schedx
import schedx.lr_scheduler as schedx_lr
from twins import (
    ALL_NAMES,
    CANONICAL,
    SCHEDX,
    TORCH,
    Custom,
    Fn,
    Sched,
    Twins,
    assert_same_param_groups,
    make_optimizer,
)

TWINS_FILE = sys.modules["twins"].__file__

# ---------------------------------------------------------------------------------------------
# Types and names
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_class_is_a_subclass_of_torchs_class(name):
    assert issubclass(getattr(SCHEDX, name), getattr(TORCH, name))
    assert issubclass(getattr(SCHEDX, name), torch_lr.LRScheduler)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_instance_is_an_instance_of_torchs_class(name):
    """Frameworks test types: Lightning special-cases ReduceLROnPlateau, HF checks LRScheduler."""
    opt = make_optimizer()
    sched = CANONICAL[name].build(SCHEDX, opt)
    assert isinstance(sched, getattr(TORCH, name))
    assert isinstance(sched, torch_lr.LRScheduler)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_class_keeps_torchs_name(name):
    assert getattr(SCHEDX, name).__name__ == getattr(TORCH, name).__name__


@pytest.mark.parametrize("name", ALL_NAMES)
def test_class_is_reexported_from_the_package(name):
    module = schedx.swa_utils if name == "SWALR" else schedx_lr
    assert getattr(schedx, name) is getattr(module, name)


def test_base_classes_are_torchs_or_subclasses_of_them():
    assert issubclass(schedx_lr.LRScheduler, torch_lr.LRScheduler)
    assert issubclass(schedx_lr._LRScheduler, torch_lr.LRScheduler)
    assert schedx_lr._LRScheduler.__name__ == "_LRScheduler"


def test_all_covers_torchs_all():
    missing = set(torch_lr.__all__) - set(schedx_lr.__all__)
    assert not missing, f"schedx.lr_scheduler.__all__ lacks {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(torch_lr.__all__))
def test_every_name_in_torchs_all_resolves_to_a_compatible_object(name):
    ours, theirs = getattr(schedx_lr, name), getattr(torch_lr, name)
    if isinstance(theirs, type):
        assert issubclass(ours, theirs)
    else:
        assert type(ours) is type(theirs)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_public_instance_attributes_equal_torchs(name):
    opt_t, opt_s = make_optimizer(), make_optimizer()
    t = CANONICAL[name].build(TORCH, opt_t)
    s = CANONICAL[name].build(SCHEDX, opt_s)
    public = lambda o: {k for k in vars(o) if not k.startswith("_")}  # noqa: E731
    assert public(s) == public(t)


# ---------------------------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------------------------


def _normalized(sig: inspect.Signature):
    def ann(a):
        if a is inspect.Parameter.empty:
            return a
        return a if isinstance(a, str) else inspect.formatannotation(a)

    return [(p.name, p.kind, p.default, ann(p.annotation)) for p in sig.parameters.values()]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_constructor_signature_equals_torchs(name):
    """Names, kinds, defaults and annotations (LightningCLI/jsonargparse read them)."""
    ours = inspect.signature(getattr(SCHEDX, name))
    theirs = inspect.signature(getattr(TORCH, name))
    assert _normalized(ours) == _normalized(theirs)


@pytest.mark.parametrize(
    "method", ["step", "get_lr", "get_last_lr", "state_dict", "load_state_dict"]
)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_method_signature_equals_torchs(name, method):
    ours = getattr(getattr(SCHEDX, name), method)
    theirs = getattr(getattr(TORCH, name), method)
    sig = lambda f: [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]  # noqa: E731
    assert sig(ours) == sig(theirs)


# ---------------------------------------------------------------------------------------------
# Validation errors: type and message equal torch's, and the optimizer ends up the same
# ---------------------------------------------------------------------------------------------


def _not_an_optimizer(name, **kw):
    def build(impl, opt):
        cls = getattr(impl, name)
        if name == "ChainedScheduler":
            return cls([object()])
        if name == "SequentialLR":
            return cls(object(), [impl.StepLR(opt, 2)], milestones=[])
        return cls(object(), **kw)

    return Custom(f"{name}(<not an optimizer>, {kw})", build)


def _other_optimizer(name):
    def build(impl, opt):
        stranger = make_optimizer("sgd", [0.1, 0.2, 0.3])
        kids = [impl.StepLR(opt, 2), impl.ExponentialLR(stranger, 0.9)]
        if name == "SequentialLR":
            return impl.SequentialLR(opt, kids, milestones=[2])
        return impl.ChainedScheduler(kids, optimizer=opt)

    return Custom(f"{name} with a child on another optimizer", build)


def _with_plateau_child(name):
    def build(impl, opt):
        kids = [impl.StepLR(opt, 2), impl.ReduceLROnPlateau(opt)]
        if name == "SequentialLR":
            return impl.SequentialLR(opt, kids, milestones=[2])
        return impl.ChainedScheduler(kids)

    return Custom(f"{name} with a ReduceLROnPlateau child", build)


INVALID = {
    # name: [(optimizer kind, spec), ...]
    "LambdaLR": [
        ("sgd", Sched("LambdaLR", lr_lambda=[Fn("exp"), Fn("exp")])),
        ("sgd", _not_an_optimizer("LambdaLR", lr_lambda=lambda e: 1.0)),
    ],
    "MultiplicativeLR": [
        ("sgd", Sched("MultiplicativeLR", lr_lambda=[Fn("const")] * 2)),
        ("sgd", Sched("MultiplicativeLR", lr_lambda=0.9)),
        ("sgd", Sched("MultiplicativeLR", lr_lambda=[Fn("const"), 0.9, Fn("const")])),
    ],
    "StepLR": [("sgd", _not_an_optimizer("StepLR", step_size=2))],
    "MultiStepLR": [
        ("sgd", Sched("MultiStepLR", milestones=5)),
        ("sgd", _not_an_optimizer("MultiStepLR", milestones=[2])),
    ],
    "ConstantLR": [
        ("sgd", Sched("ConstantLR", factor=1.5)),
        ("sgd", Sched("ConstantLR", factor=-0.1)),
    ],
    "LinearLR": [
        ("sgd", Sched("LinearLR", start_factor=0.0)),
        ("sgd", Sched("LinearLR", start_factor=1.5)),
        ("sgd", Sched("LinearLR", end_factor=-0.5)),
        ("sgd", Sched("LinearLR", end_factor=1.01)),
    ],
    "ExponentialLR": [("sgd", _not_an_optimizer("ExponentialLR", gamma=0.9))],
    "PolynomialLR": [("sgd", _not_an_optimizer("PolynomialLR"))],
    "CosineAnnealingLR": [("sgd", _not_an_optimizer("CosineAnnealingLR", T_max=3))],
    "SequentialLR": [
        ("sgd", Sched("SequentialLR", children=[], milestones=[])),
        ("sgd", Sched("SequentialLR", children=[CANONICAL["StepLR"]] * 2, milestones=[1, 2])),
        ("sgd", _not_an_optimizer("SequentialLR")),
        ("sgd", _other_optimizer("SequentialLR")),
        ("sgd", _with_plateau_child("SequentialLR")),
        ("sgd", Custom("SequentialLR with a child lacking .optimizer",
                       lambda impl, opt: impl.SequentialLR(opt, [object()], milestones=[]))),
    ],
    "ChainedScheduler": [
        ("sgd", Sched("ChainedScheduler", children=[])),
        ("sgd", _not_an_optimizer("ChainedScheduler")),
        ("sgd", _other_optimizer("ChainedScheduler")),
        ("sgd", _with_plateau_child("ChainedScheduler")),
    ],
    "ReduceLROnPlateau": [
        ("sgd", Sched("ReduceLROnPlateau", factor=1.0)),
        ("sgd", Sched("ReduceLROnPlateau", mode="avg")),
        ("sgd", Sched("ReduceLROnPlateau", threshold_mode="percent")),
        ("sgd", Sched("ReduceLROnPlateau", min_lr=[0.1, 0.2])),
        ("sgd", _not_an_optimizer("ReduceLROnPlateau")),
    ],
    "CyclicLR": [
        ("sgd", Sched("CyclicLR", base_lr=[0.01, 0.02], max_lr=0.1)),
        ("sgd", Sched("CyclicLR", base_lr=0.01, max_lr=[0.1, 0.2])),
        ("sgd", Sched("CyclicLR", base_lr=0.01, max_lr=0.1, mode="sawtooth")),
        ("adagrad", Sched("CyclicLR", base_lr=0.01, max_lr=0.1)),
        ("sgd", Sched("CyclicLR", base_lr=0.01, max_lr=0.1, base_momentum=[0.8, 0.8])),
        ("sgd", Sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=0, step_size_down=0)),
        ("sgd", _not_an_optimizer("CyclicLR", base_lr=0.01, max_lr=0.1)),
    ],
    "OneCycleLR": [
        ("sgd", Sched("OneCycleLR", max_lr=0.1)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, total_steps=0)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, total_steps=-3)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, total_steps=2.5)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, epochs=0, steps_per_epoch=3)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, epochs=2, steps_per_epoch=0)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, epochs=2)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, total_steps=10, pct_start=1.5)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, total_steps=10, pct_start=1)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, total_steps=10, anneal_strategy="exp")),
        ("sgd", Sched("OneCycleLR", max_lr=[0.1, 0.2], total_steps=10)),
        ("adagrad", Sched("OneCycleLR", max_lr=0.1, total_steps=10)),
        ("sgd", Sched("OneCycleLR", max_lr=0.1, total_steps=10, max_momentum=[0.9])),
        # phases of zero length: torch divides by zero while constructing
        ("sgd", Sched("OneCycleLR", max_lr=0.1, total_steps=2, pct_start=0.5, three_phase=True)),
        ("sgd", _not_an_optimizer("OneCycleLR", max_lr=0.1, total_steps=10)),
    ],
    "CosineAnnealingWarmRestarts": [
        ("sgd", Sched("CosineAnnealingWarmRestarts", T_0=0)),
        ("sgd", Sched("CosineAnnealingWarmRestarts", T_0=2.5)),
        ("sgd", Sched("CosineAnnealingWarmRestarts", T_0=3, T_mult=0)),
        ("sgd", Sched("CosineAnnealingWarmRestarts", T_0=3, T_mult=1.5)),
        ("sgd", Sched("CosineAnnealingWarmRestarts", T_0=3, eta_min="0")),
        ("sgd", _not_an_optimizer("CosineAnnealingWarmRestarts", T_0=3)),
    ],
    "SWALR": [
        ("sgd", Sched("SWALR", swa_lr=0.05, anneal_strategy="exp")),
        ("sgd", Sched("SWALR", swa_lr=0.05, anneal_epochs=-1)),
        ("sgd", Sched("SWALR", swa_lr=0.05, anneal_epochs=2.5)),
        ("sgd", Sched("SWALR", swa_lr=[0.05, 0.01])),
        ("sgd", _not_an_optimizer("SWALR", swa_lr=0.05)),
    ],
}
assert set(INVALID) == set(ALL_NAMES)

INVALID_CASES = [
    pytest.param(kind, spec, id=f"{name}-{i}") for name in ALL_NAMES
    for i, (kind, spec) in enumerate(INVALID[name])
]


@pytest.mark.parametrize("kind, spec", INVALID_CASES)
def test_invalid_arguments_raise_torchs_exception_and_message(kind, spec):
    tw = Twins(spec, kind=kind, n_groups=3, build=False)
    oa, ob = tw.build()  # compares type, message, warnings and the optimizer left behind
    if oa.exc is None:
        # (A non-callable lr_lambda, for one, is refused at construction from torch 2.8 on.)
        pytest.skip(f"valid for the installed torch: {spec!r}")


# ---------------------------------------------------------------------------------------------
# The compiled engine is what runs
# ---------------------------------------------------------------------------------------------


def test_compiled_engine_is_an_extension_module():
    engine = schedx._C
    assert isinstance(engine, types.ModuleType)
    assert engine.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


ENGINE_CASES = {  # label: (optimizer kind, spec)
    **{name: ("sgd", spec) for name, spec in CANONICAL.items()},
    # reduce on every step, so that the reduction itself is measured
    "ReduceLROnPlateau": (
        "sgd", Sched("ReduceLROnPlateau", patience=0, factor=0.9, min_lr=0.0)
    ),
    # (A custom scale_fn is not here: torch calls it once per group, and so does schedx.)
    "CyclicLR with Adam betas": ("adam", Sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=2)),
    "OneCycleLR with Adam betas": ("adam", CANONICAL["OneCycleLR"]),
}


def _python_calls_during_steps(spec, kind, n_groups, warmup=2, measured=4):
    """Python-level function calls made by `measured` step() calls, excluding the user's own
    functions (lambdas defined in twins.py, which torch also calls once per group)."""
    opt = make_optimizer(kind, [0.1 + 0.001 * i for i in range(n_groups)])
    ref_opt = make_optimizer(kind, [0.1 + 0.001 * i for i in range(n_groups)])
    sched = spec.build(SCHEDX, opt)
    ref = spec.build(TORCH, ref_opt)
    opt.step()
    ref_opt.step()
    metric = iter(range(1, 1000))  # worse every step (mode="min")

    def step(s, m):
        return s.step(m) if spec.takes_metric else s.step()

    for _ in range(warmup):
        m = next(metric)
        step(sched, m)
        step(ref, m)
    calls = 0

    def profiler(frame, event, arg):
        nonlocal calls
        if event == "call" and frame.f_code.co_filename != TWINS_FILE:
            calls += 1

    for _ in range(measured):
        m = next(metric)
        sys.setprofile(profiler)
        try:
            step(sched, m)
        finally:
            sys.setprofile(None)
        step(ref, m)
    assert_same_param_groups(ref_opt, opt, f"{spec!r} with {n_groups} groups")
    return calls


@pytest.mark.parametrize("case", ENGINE_CASES)
def test_step_python_work_does_not_grow_with_the_number_of_groups(case):
    """The engine runs: the number of Python function calls made by step() is the same for 2 and
    200 groups (torch's own step makes several per group).  LambdaLR/MultiplicativeLR call the
    user's lambdas once per group, as torch does; those calls are not counted."""
    kind, spec = ENGINE_CASES[case]
    few = _python_calls_during_steps(spec, kind, 2)
    many = _python_calls_during_steps(spec, kind, 200)
    assert many <= few, f"{case}: {few} Python calls with 2 groups, {many} with 200"


def test_python_call_counter_sees_torchs_per_group_work():
    """Guards the test above: the same measurement on torch's own class does grow."""

    def count(n):
        opt = make_optimizer("sgd", [0.1] * n)
        # torch's CyclicLR calls its scale function once per group, in every release.
        sched = TORCH.CyclicLR(opt, base_lr=0.01, max_lr=0.1, cycle_momentum=False)
        opt.step()
        calls = 0

        def profiler(frame, event, arg):
            nonlocal calls
            calls += event == "call"

        sys.setprofile(profiler)
        try:
            sched.step()
        finally:
            sys.setprofile(None)
        return calls

    assert count(200) > count(2)
