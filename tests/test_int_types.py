"""Python ints where torch keeps them.

torch's schedulers are Python arithmetic on whatever the user gave: an int LR times an int factor
stays an int (StepLR, MultiStepLR, ExponentialLR, LambdaLR, MultiplicativeLR, ConstantLR and LinearLR
with factor 1, the closed forms' ``gamma ** k``), ReduceLROnPlateau's ``max(lr * factor, min_lr)``
gives an int ``min_lr`` itself, and SWALR's linear anneal gives an int ``swa_lr`` back. Past 2**53
an int's value is exact where a float's is not. schedx must give, after every step, values of torch's types and torch's values.

The property test draws random int/float mixes of every input (group LRs, momenta, each scheduler's
hyperparameters, what a lambda returns) and compares ``type(v)`` and ``v`` with a torch twin after
every step; the examples after it pin the cases the issue names.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import schedx
import schedx.swa_utils

TORCH = (torch.optim.lr_scheduler, torch.optim.swa_utils)
SCHEDX = (schedx.lr_scheduler, schedx.swa_utils)


def _cls(impl, name):
    lr_module, swa_module = impl
    return getattr(swa_module if name == "SWALR" else lr_module, name)


def _typed_diffs(a, b, path="value") -> list[str]:
    """Differences between torch's `a` and schedx's `b`, types included (1 is not 1.0)."""
    if isinstance(a, (list, tuple)) and type(a) is type(b) and len(a) == len(b):
        return [d for k, (x, y) in enumerate(zip(a, b)) for d in _typed_diffs(x, y, f"{path}[{k}]")]
    if type(a) is not type(b):
        return [f"{path}: torch {a!r} ({type(a).__name__}), schedx {b!r} ({type(b).__name__})"]
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: torch {a!r}, schedx {b!r}"]


def _state(optimizer, scheduler) -> list:
    keys = ("lr", "momentum", "betas")
    groups = [[g.get(k) for k in keys] for g in optimizer.param_groups]
    return [groups, list(scheduler.get_last_lr())]


def _optimizer(lrs, momenta, adam):
    groups = [{"params": [torch.zeros(1)], "lr": lr} for lr in lrs]
    if adam:
        return torch.optim.Adam(groups, lr=0.1)
    for group, momentum in zip(groups, momenta):
        group["momentum"] = momentum
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9)


# What a user may give as a number: ints (bools among them) and floats.
INTS = st.sampled_from([0, 1, 2, 3, True, False])
FLOATS = st.sampled_from([0.5, 0.1, 1.0, 2.0, 0.25, 3.0])
NUMBERS = st.one_of(INTS, FLOATS)
POSITIVE = st.one_of(st.sampled_from([1, 2, 3, True]), st.sampled_from([0.5, 1.0, 2.0, 0.1]))
FACTORS = st.one_of(st.sampled_from([0, 1, True, False]), st.sampled_from([0.5, 1.0, 0.25]))

# Lambdas returning ints or floats (module-level, so torch's and schedx's twins share them).
LAMBDAS = [
    lambda e: e + 1,
    lambda e: 2,
    lambda e: 1,
    lambda e: 3 * (e + 1),
    lambda e: e // 2,
    lambda e: 0.5**e,
    lambda e: True,
]


@st.composite
def scheduler_specs(draw):
    """(class name, kwargs, whether step(epoch) is exercised, whether it takes a metric)."""
    name = draw(
        st.sampled_from(
            [
                "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR",
                "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "LambdaLR", "MultiplicativeLR",
                "CyclicLR", "OneCycleLR", "ReduceLROnPlateau", "SWALR",
            ]
        )
    )
    kw = {
        "StepLR": lambda: {"step_size": draw(st.integers(1, 4)), "gamma": draw(NUMBERS)},
        "MultiStepLR": lambda: {
            "milestones": draw(st.lists(st.integers(1, 8), max_size=4)),
            "gamma": draw(NUMBERS),
        },
        "ConstantLR": lambda: {"factor": draw(FACTORS), "total_iters": draw(st.integers(0, 4))},
        "LinearLR": lambda: {
            "start_factor": draw(st.sampled_from([1, True, 0.5, 1.0])),
            "end_factor": draw(FACTORS),
            "total_iters": draw(st.integers(1, 4)),
        },
        "ExponentialLR": lambda: {"gamma": draw(NUMBERS)},
        "PolynomialLR": lambda: {"total_iters": draw(st.integers(1, 5)), "power": draw(NUMBERS)},
        "CosineAnnealingLR": lambda: {"T_max": draw(st.integers(1, 5)), "eta_min": draw(NUMBERS)},
        "CosineAnnealingWarmRestarts": lambda: {
            "T_0": draw(st.integers(1, 4)),
            "T_mult": draw(st.integers(1, 2)),
            "eta_min": draw(NUMBERS),
        },
        "LambdaLR": lambda: {"lr_lambda": draw(st.sampled_from(LAMBDAS))},
        "MultiplicativeLR": lambda: {"lr_lambda": draw(st.sampled_from(LAMBDAS))},
        "CyclicLR": lambda: {
            "base_lr": draw(NUMBERS),
            "max_lr": draw(NUMBERS),
            "step_size_up": draw(st.integers(1, 4)),
            "mode": draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
            "gamma": draw(NUMBERS),
            "cycle_momentum": draw(st.booleans()),
            "base_momentum": draw(NUMBERS),
            "max_momentum": draw(NUMBERS),
        },
        "OneCycleLR": lambda: {
            "max_lr": draw(POSITIVE),
            "total_steps": 40,
            "anneal_strategy": draw(st.sampled_from(["cos", "linear"])),
            "cycle_momentum": draw(st.booleans()),
            "base_momentum": draw(NUMBERS),
            "max_momentum": draw(NUMBERS),
            "div_factor": draw(POSITIVE),
            "final_div_factor": draw(POSITIVE),
        },
        "ReduceLROnPlateau": lambda: {
            "factor": draw(st.sampled_from([0, False, 0.5, 0.1])),
            "patience": draw(st.integers(0, 2)),
            "min_lr": draw(NUMBERS),
            "threshold": draw(st.sampled_from([0, 1e-4, 0.5])),
            "eps": draw(st.sampled_from([0, 1e-8])),
            "cooldown": draw(st.integers(0, 1)),
        },
        "SWALR": lambda: {
            "swa_lr": draw(NUMBERS),
            "anneal_epochs": draw(st.integers(0, 3)),
            "anneal_strategy": draw(st.sampled_from(["cos", "linear"])),
        },
    }[name]()
    return name, kw


@st.composite
def setups(draw):
    n_groups = draw(st.integers(1, 3))
    lrs = draw(st.lists(NUMBERS, min_size=n_groups, max_size=n_groups))
    momenta = draw(st.lists(NUMBERS, min_size=n_groups, max_size=n_groups))
    spec = draw(scheduler_specs())
    composite = draw(st.sampled_from([None, "ChainedScheduler", "SequentialLR"]))
    other = draw(scheduler_specs()) if composite else None
    plain = ("ReduceLROnPlateau", "SWALR", "CyclicLR", "OneCycleLR")
    if composite and (spec[0] in plain or other[0] in plain):
        composite, other = None, None
    steps = draw(st.lists(st.sampled_from(["step", "step", "step", "epoch"]), max_size=40))
    epochs = draw(st.lists(st.integers(0, 12), min_size=len(steps), max_size=len(steps)))
    metrics = draw(st.lists(st.sampled_from([1, 2, 0.5, 3.0]), min_size=len(steps), max_size=len(steps)))
    adam = spec[0] in ("CyclicLR", "OneCycleLR") and draw(st.booleans())
    return lrs, momenta, adam, spec, composite, other, list(zip(steps, epochs, metrics))


def _build(impl, lrs, momenta, adam, spec, composite, other):
    optimizer = _optimizer(lrs, momenta, adam)
    name, kw = spec
    if composite is None:
        return optimizer, _cls(impl, name)(optimizer, **kw)
    first = _cls(impl, name)(optimizer, **kw)
    second = _cls(impl, other[0])(optimizer, **other[1])
    if composite == "ChainedScheduler":
        return optimizer, _cls(impl, composite)([first, second])
    return optimizer, _cls(impl, composite)(optimizer, [first, second], milestones=[3])


def _outcome(fn):
    try:
        fn()
    except Exception as error:  # noqa: BLE001 - compared with torch's
        return type(error), str(error)
    return None


def _run(impl, setup):
    lrs, momenta, adam, spec, composite, other, actions = setup
    try:
        optimizer, scheduler = _build(impl, lrs, momenta, adam, spec, composite, other)
    except Exception as error:  # noqa: BLE001 - compared with torch's
        return [("construction", type(error), str(error))]
    record = [("construction", _state(optimizer, scheduler))]
    for action, epoch, metric in actions:
        optimizer.step()
        if spec[0] == "ReduceLROnPlateau":
            call = lambda: scheduler.step(metric)  # noqa: E731
        elif action == "epoch" and composite is None:
            call = lambda: scheduler.step(epoch)  # noqa: E731
        else:
            call = scheduler.step
        record.append((action, _outcome(call), _state(optimizer, scheduler)))
    return record


@given(setups())
def test_every_step_gives_torchs_types_and_values_for_int_and_float_inputs(setup):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, got = _run(TORCH, setup), _run(SCHEDX, setup)
    assert not _typed_diffs(expected, got), "\n".join(_typed_diffs(expected, got))


def _lrs_after(impl, make, steps, lrs=(1,), epoch=None):
    optimizer = _optimizer(list(lrs), [0.9] * len(lrs), adam=False)
    scheduler = make(impl, optimizer)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            optimizer.step()
            scheduler.step() if epoch is None else scheduler.step(epoch)
            out.append([g["lr"] for g in optimizer.param_groups] + list(scheduler.get_last_lr()))
    return out


def _assert_twins(make, steps, lrs=(1,), epoch=None):
    expected = _lrs_after(TORCH, make, steps, lrs, epoch)
    got = _lrs_after(SCHEDX, make, steps, lrs, epoch)
    assert not _typed_diffs(expected, got), "\n".join(_typed_diffs(expected, got))


def test_exponential_lr_with_int_lr_and_gamma_is_exact_past_2_to_the_53():
    _assert_twins(lambda impl, o: _cls(impl, "ExponentialLR")(o, gamma=3), 40)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("StepLR", {"step_size": 2, "gamma": 2}),
        ("MultiStepLR", {"milestones": [1, 2, 2, 4], "gamma": 3}),
        ("ConstantLR", {"factor": 1, "total_iters": 2}),
        ("LambdaLR", {"lr_lambda": lambda e: e + 1}),
        ("LambdaLR", {"lr_lambda": lambda e: 3 * (e + 1)}),
        ("MultiplicativeLR", {"lr_lambda": lambda e: 2}),
        ("SWALR", {"swa_lr": 2, "anneal_epochs": 2, "anneal_strategy": "linear"}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_int_lr_times_an_int_factor_stays_an_int(name, kw):
    _assert_twins(lambda impl, o: _cls(impl, name)(o, **kw), 8, lrs=(1, 0.5, 2))


@pytest.mark.parametrize("name, kw", [
    ("StepLR", {"step_size": 2, "gamma": 3}),
    ("MultiStepLR", {"milestones": [1, 2, 2], "gamma": 3}),
    ("ExponentialLR", {"gamma": 3}),
    ("ConstantLR", {"factor": 1, "total_iters": 2}),
])
@pytest.mark.parametrize("epoch", [0, 5, 40])
def test_a_closed_form_step_with_an_int_factor_gives_torchs_int(name, kw, epoch):
    _assert_twins(lambda impl, o: _cls(impl, name)(o, **kw), 2, lrs=(1, 0.5), epoch=epoch)


def test_sequential_lr_hands_over_with_torchs_int_closed_form():
    def make(impl, o):
        first = _cls(impl, "ConstantLR")(o, factor=1, total_iters=2)
        second = _cls(impl, "ExponentialLR")(o, gamma=3)
        return _cls(impl, "SequentialLR")(o, [first, second], milestones=[3])

    _assert_twins(make, 40, lrs=(1, 2))


def test_chained_scheduler_keeps_torchs_ints():
    def make(impl, o):
        return _cls(impl, "ChainedScheduler")(
            [_cls(impl, "StepLR")(o, step_size=2, gamma=2), _cls(impl, "ExponentialLR")(o, gamma=3)]
        )

    _assert_twins(make, 12, lrs=(1, 0.5))


def test_plateau_min_lr_int_that_wins_is_written_as_that_int():
    def lrs(impl):
        optimizer = _optimizer([2.0, 0.5], [0.9, 0.9], adam=False)
        scheduler = _cls(impl, "ReduceLROnPlateau")(optimizer, factor=0.1, patience=0, min_lr=1)
        out = []
        for metric in (1.0, 2.0, 3.0, 4.0):
            scheduler.step(metric)
            out.append([g["lr"] for g in optimizer.param_groups] + list(scheduler.get_last_lr()))
        return out

    assert not _typed_diffs(lrs(TORCH), lrs(SCHEDX))


def test_cyclic_exp_range_with_an_int_gamma_gives_torchs_value_and_error():
    def make(impl, o):
        return _cls(impl, "CyclicLR")(
            o, base_lr=0.1, max_lr=1.0, step_size_up=3, mode="exp_range", gamma=10, cycle_momentum=False
        )

    expected = _outcome(lambda: _lrs_after(TORCH, make, 400, lrs=(0.5,)))
    assert expected is not None  # torch's int power leaves the float range: OverflowError
    assert _outcome(lambda: _lrs_after(SCHEDX, make, 400, lrs=(0.5,))) == expected
    _assert_twins(make, 30, lrs=(0.5,))


def test_schedule_lr_with_an_int_factor_gives_lambda_lrs_int():
    def make(impl, o):
        if impl is SCHEDX:
            return schedx.ScheduleLR(o, 2)
        return _cls(TORCH, "LambdaLR")(o, lambda e: 2)

    _assert_twins(make, 4, lrs=(1, 0.5))


def test_plateau_compares_with_an_exact_int_bound_as_torch_does():
    def bests(impl):
        optimizer = _optimizer([0.5], [0.9], adam=False)
        scheduler = _cls(impl, "ReduceLROnPlateau")(optimizer, threshold_mode="abs", patience=0)
        scheduler.step(1.0)
        scheduler.best, scheduler.threshold = 2**53 - 1, -2  # torch's bound: exactly 2**53 + 1
        scheduler.step(float(2**53))
        return scheduler.best, scheduler.num_bad_epochs, [g["lr"] for g in optimizer.param_groups]

    assert not _typed_diffs(bests(TORCH), bests(SCHEDX))


@pytest.mark.parametrize("epoch", [None, 3], ids=["plain-step", "step-with-epoch"])
def test_plateau_keeps_an_int_best_that_the_metric_does_not_beat(epoch):
    def bests(impl):
        optimizer = _optimizer([0.5], [0.9], adam=False)
        scheduler = _cls(impl, "ReduceLROnPlateau")(optimizer, patience=0)
        scheduler.step(1.0)
        scheduler.best = 5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the epoch argument's deprecation, torch's and schedx's alike
            scheduler.step(10.0, epoch)
        return scheduler.best, scheduler.num_bad_epochs, [g["lr"] for g in optimizer.param_groups]

    assert not _typed_diffs(bests(TORCH), bests(SCHEDX))
