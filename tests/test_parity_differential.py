"""Randomized differential testing: schedx against torch, value for value.

For each of the 16 scheduler classes (plus the SWA pattern and random SequentialLR /
ChainedScheduler composites), Hypothesis draws valid hyperparameters that reach torch's edge
branches, an optimizer (SGD with momentum or Adam, 1-64 param groups with different LRs), and a
random sequence of actions:

    step() / step(metric)          user edit of group["lr"]          deprecated step(epoch)
    optimizer.step()               optimizer.add_param_group(...)    get_lr() outside step()
    optimizer.load_state_dict(optimizer.state_dict())
    state-dict hand-over (torch -> schedx on one twin, schedx -> torch on the other)

Both twins get the same actions; after *every* action the exception (type and message), the
warnings, every param-group value (lr, momentum, betas, initial_lr, ...), get_last_lr() and
state_dict() must be identical (floats compared with ==).

How to run
----------
Default (profile ``ci``, part of ``make test``; 40 configurations per test):

    .venv/bin/python -m pytest tests/test_parity_differential.py

Long randomized run (``make parity-long``): profile ``long`` runs 600 configurations for each of
the 17 per-class tests plus 600 larger mixed-class ones (the ``slow`` test) -- 10,800
configurations:

    SCHEDX_HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -q -m 'slow or not slow' tests/test_parity_differential.py

A failure prints the scenario (spec, optimizer, group LRs, actions) and the first differing values;
Hypothesis shrinks it to a minimal reproduction and prints a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from twins import (
    ALL_NAMES,
    CHAINABLE_NAMES,
    OPTIMIZER_KINDS,
    Fn,
    Sched,
    SwaPattern,
    Twins,
)

# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

finite = dict(allow_nan=False, allow_infinity=False)


def lr_values():
    return st.one_of(
        st.floats(1e-6, 10.0, **finite),
        st.sampled_from([0.1, 0.001, 0.05, 1, 2, 0.3, 1e-8, 0.0]),
    )


def factors(lo=0.0, hi=1.0, specials=()):
    return st.one_of(st.floats(lo, hi, **finite), st.sampled_from([lo, hi, *specials]))


def group_counts():
    return st.one_of(st.integers(1, 4), st.integers(5, 64))


def per_group(n, values):
    """A scalar for all groups, or a list with one value per group."""
    return st.one_of(values, st.lists(values, min_size=n, max_size=n))


# --------------------------------------------------------------------------------------------
# Hyperparameter strategies, one per class (all valid for the constructor)
# --------------------------------------------------------------------------------------------


def lambda_fns():
    return st.one_of(
        st.builds(Fn, st.just("exp"), factors(0.5, 1.0)),
        st.builds(Fn, st.just("step"), factors(0.1, 1.0), st.integers(1, 5)),
        st.builds(Fn, st.just("warmup"), st.just(0.0), st.integers(1, 8)),
        st.builds(Fn, st.just("int"), st.just(0.0), st.integers(1, 4)),
        st.builds(Fn, st.just("obj_exp"), factors(0.5, 1.0)),
    )


def multiplicative_fns():
    return st.one_of(
        st.builds(Fn, st.just("const"), factors(0.5, 1.1)),
        st.builds(Fn, st.just("every"), factors(0.1, 1.0), st.integers(1, 4)),
        st.builds(Fn, st.just("obj_const"), factors(0.5, 1.0)),
    )


def lambda_lr(n):
    return st.builds(lambda f: Sched("LambdaLR", lr_lambda=f), per_group(n, lambda_fns()))


def multiplicative_lr(n):
    return st.builds(
        lambda f: Sched("MultiplicativeLR", lr_lambda=f), per_group(n, multiplicative_fns())
    )


def step_lr(n):
    return st.builds(
        lambda s, g: Sched("StepLR", step_size=s, gamma=g),
        st.integers(1, 8),
        factors(0.0, 1.5, (0.1, 0.5)),
    )


def multistep_lr(n):
    # unsorted, repeated milestones included (repeats decay by gamma**count)
    return st.builds(
        lambda m, g: Sched("MultiStepLR", milestones=m, gamma=g),
        st.lists(st.integers(0, 25), max_size=8),
        factors(0.0, 1.5, (0.1, 0.5)),
    )


def constant_lr(n):
    return st.builds(
        lambda f, t: Sched("ConstantLR", factor=f, total_iters=t),
        factors(0.0, 1.0, (1 / 3, 0.5)),
        st.integers(0, 12),
    )


def linear_lr(n):
    return st.builds(
        lambda s, e, t: Sched("LinearLR", start_factor=s, end_factor=e, total_iters=t),
        factors(1e-3, 1.0, (1 / 3,)),
        factors(0.0, 1.0),
        st.integers(1, 12),
    )


def exponential_lr(n):
    return st.builds(lambda g: Sched("ExponentialLR", gamma=g), factors(0.5, 1.2, (0.9, 0.99)))


def polynomial_lr(n):
    return st.builds(
        lambda t, p: Sched("PolynomialLR", total_iters=t, power=p),
        st.integers(1, 20),
        factors(0.0, 4.0, (1.0, 2.0, 0.5)),
    )


def cosine_lr(n):
    return st.builds(
        lambda t, e: Sched("CosineAnnealingLR", T_max=t, eta_min=e),
        st.integers(1, 15),
        st.one_of(st.just(0.0), factors(0.0, 0.05), st.just(0.5)),
    )


def warm_restarts(n):
    return st.builds(
        lambda t0, tm, e: Sched("CosineAnnealingWarmRestarts", T_0=t0, T_mult=tm, eta_min=e),
        st.integers(1, 10),
        st.integers(1, 4),
        st.one_of(st.just(0.0), factors(0.0, 0.05)),
    )


@st.composite
def cyclic_lr(draw, n):
    kw = {}
    kw["base_lr"] = draw(per_group(n, factors(1e-4, 0.05)))
    kw["max_lr"] = draw(per_group(n, factors(0.05, 1.0)))
    kw["step_size_up"] = draw(st.integers(1, 8))
    kw["step_size_down"] = draw(st.one_of(st.none(), st.integers(1, 8)))
    kw["mode"] = draw(st.sampled_from(["triangular", "triangular2", "exp_range"]))
    kw["gamma"] = draw(factors(0.8, 1.0, (0.99,)))
    if draw(st.booleans()):
        kw["scale_fn"] = draw(
            st.builds(Fn, st.sampled_from(["inverse", "exp", "obj_inverse"]), factors(0.1, 1.0))
        )
        kw["scale_mode"] = draw(st.sampled_from(["cycle", "iterations"]))
    kw["cycle_momentum"] = draw(st.booleans())
    if kw["cycle_momentum"] and draw(st.booleans()):
        kw["base_momentum"] = draw(per_group(n, factors(0.5, 0.85)))
        kw["max_momentum"] = draw(per_group(n, factors(0.85, 0.99)))
    return Sched("CyclicLR", **kw)


@st.composite
def one_cycle_lr(draw, n):
    kw = {"max_lr": draw(per_group(n, factors(1e-3, 1.0)))}
    if draw(st.booleans()):
        kw["total_steps"] = draw(st.integers(1, 40))
    else:
        kw["epochs"] = draw(st.integers(1, 5))
        kw["steps_per_epoch"] = draw(st.integers(1, 8))
    kw["pct_start"] = draw(factors(0.0, 1.0, (0.3, 0.25, 0.5)))
    kw["anneal_strategy"] = draw(st.sampled_from(["cos", "linear"]))
    kw["three_phase"] = draw(st.booleans())
    kw["cycle_momentum"] = draw(st.booleans())
    if kw["cycle_momentum"] and draw(st.booleans()):
        kw["base_momentum"] = draw(per_group(n, factors(0.5, 0.85)))
        kw["max_momentum"] = draw(per_group(n, factors(0.85, 0.99)))
    kw["div_factor"] = draw(st.one_of(st.just(25.0), factors(1.0, 100.0)))
    kw["final_div_factor"] = draw(st.one_of(st.just(1e4), factors(1.0, 1e5)))
    return Sched("OneCycleLR", **kw)


@st.composite
def reduce_on_plateau(draw, n):
    kw = {
        "mode": draw(st.sampled_from(["min", "max"])),
        "factor": draw(factors(0.0, 0.99, (0.1, 0.5))),
        "patience": draw(st.integers(0, 4)),
        "threshold": draw(st.one_of(st.sampled_from([0.0, 1e-4, 0.1]), factors(0.0, 0.5))),
        "threshold_mode": draw(st.sampled_from(["rel", "abs"])),
        "cooldown": draw(st.integers(0, 3)),
        "min_lr": draw(per_group(n, st.one_of(st.just(0.0), factors(0.0, 0.05)))),
        "eps": draw(st.sampled_from([1e-8, 0.0, 1e-3])),
    }
    return Sched("ReduceLROnPlateau", **kw)


def swalr(n):
    return st.builds(
        lambda lr, e, s: Sched("SWALR", swa_lr=lr, anneal_epochs=e, anneal_strategy=s),
        per_group(n, factors(1e-4, 0.5)),
        st.integers(0, 10),
        st.sampled_from(["cos", "linear"]),
    )


SIMPLE = {
    "LambdaLR": lambda_lr,
    "MultiplicativeLR": multiplicative_lr,
    "StepLR": step_lr,
    "MultiStepLR": multistep_lr,
    "ConstantLR": constant_lr,
    "LinearLR": linear_lr,
    "ExponentialLR": exponential_lr,
    "PolynomialLR": polynomial_lr,
    "CosineAnnealingLR": cosine_lr,
    "CyclicLR": cyclic_lr,
    "OneCycleLR": one_cycle_lr,
    "CosineAnnealingWarmRestarts": warm_restarts,
    "ReduceLROnPlateau": reduce_on_plateau,
    "SWALR": swalr,
}
assert set(CHAINABLE_NAMES) <= set(SIMPLE)


def chainable_child(n, nested=True):
    """Any scheduler a composite accepts (everything but ReduceLROnPlateau)."""
    simple = st.sampled_from(CHAINABLE_NAMES + ["SWALR"]).flatmap(lambda c: SIMPLE[c](n))
    if not nested:
        return simple
    return st.one_of(simple, simple, simple, sequential_lr(n, nested=False))


@st.composite
def sequential_lr(draw, n, nested=True):
    children = draw(st.lists(chainable_child(n, nested), min_size=1, max_size=3))
    milestones = sorted(draw(st.lists(st.integers(0, 15), min_size=len(children) - 1,
                                      max_size=len(children) - 1)))
    return Sched("SequentialLR", children=children, milestones=milestones)


@st.composite
def chained_scheduler(draw, n):
    children = draw(st.lists(chainable_child(n), min_size=1, max_size=3))
    return Sched("ChainedScheduler", children=children, pass_optimizer=draw(st.booleans()))


@st.composite
def swa_pattern(draw, n):
    return SwaPattern(
        draw(chainable_child(n, nested=False)), draw(swalr(n)), draw(st.integers(0, 12))
    )


SPECS = {**SIMPLE, "SequentialLR": sequential_lr, "ChainedScheduler": chained_scheduler,
         "SWA pattern": swa_pattern}
assert set(ALL_NAMES) <= set(SPECS)

# --------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------


@dataclass
class Steps:
    """``count`` consecutive ``step()`` calls (``step(metric)`` with ``metrics`` for
    ReduceLROnPlateau)."""

    count: int
    metrics: list | None = None

    def apply(self, tw):
        for i in range(self.count):
            tw.step(metric=None if self.metrics is None else self.metrics[i])

    def __repr__(self):
        return f"Steps({self.count})" if self.metrics is None else f"Steps(metrics={self.metrics!r})"


@dataclass
class StepEpoch:
    epoch: object
    metric: object = None

    def apply(self, tw):
        return tw.step_epoch(self.epoch, metric=self.metric)


@dataclass
class EditLR:
    group: int
    value: object

    def apply(self, tw):
        return tw.edit_lr(self.group, self.value)


@dataclass
class ScaleLR:
    group: int
    factor: float

    def apply(self, tw):
        return tw.scale_lr(self.group, self.factor)


@dataclass
class OptimizerStep:
    def apply(self, tw):
        return tw.optimizer_step()


@dataclass
class Handover:
    def apply(self, tw):
        return tw.handover()


@dataclass
class AddGroup:
    lr: float

    def apply(self, tw):
        return tw.add_param_group(self.lr)


@dataclass
class GetLR:
    def apply(self, tw):
        return tw.get_lr()


@dataclass
class ReloadOptimizer:
    def apply(self, tw):
        return tw.reload_optimizer()


def metrics():
    """Metric values with plenty of plateaus (repeats), ties and occasional odd types."""
    return st.one_of(
        st.sampled_from([1.0, 1.0, 0.5, 0.5, 0.25, 2.0, 0, 1]),
        st.floats(-10, 10, **finite),
        st.builds(torch.tensor, st.sampled_from([0.5, 1.0, 0.25])),
        st.just(float("nan")),
    )


def epochs(fractional: bool):
    ints = st.integers(-2, 60)
    fracs = st.builds(
        lambda k, i, iters: k + i / iters, st.integers(0, 40), st.integers(0, 9), st.integers(1, 10)
    )
    if fractional:
        return st.one_of(fracs, ints.filter(lambda e: e >= 0), st.floats(0, 200, **finite),
                         st.just(-1))
    return st.one_of(ints, ints, ints, fracs)


def runs_of_steps(spec, max_run):
    if not spec.takes_metric:
        return st.builds(Steps, st.integers(0, max_run))
    # metric sequences: single values and plateaus (a value repeated), concatenated
    chunk = st.one_of(
        st.lists(metrics(), max_size=3),
        st.builds(lambda v, k: [v] * k, metrics(), st.integers(2, 6)),
    )
    seqs = st.lists(chunk, max_size=4).map(lambda cs: [m for c in cs for m in c][:max_run])
    return st.builds(lambda ms: Steps(len(ms), ms), seqs)


def events_for(spec):
    """Everything but plain steps: what a training loop (or its user) does between steps."""
    metric = metrics() if spec.takes_metric else st.none()
    edit = st.builds(
        EditLR,
        st.integers(0, 63),
        st.one_of(lr_values(), lr_values(), st.sampled_from([float("inf"), float("nan"), 3])),
    )
    scale = st.builds(ScaleLR, st.integers(0, 63), factors(0.1, 2.0))
    choices = [
        st.builds(OptimizerStep),
        edit,
        edit,
        scale,
        scale,
        st.builds(Handover),
        st.builds(Handover),
        st.builds(AddGroup, lr_values()),
        st.builds(ReloadOptimizer),
    ]
    if spec.name != "SWA pattern":
        choices.append(st.builds(GetLR))
    if spec.accepts_epoch:
        fractional = spec.name == "CosineAnnealingWarmRestarts"
        choices += [st.builds(StepEpoch, epochs(fractional), metric)] * 3
    return st.one_of(*choices)


def action_sequences(spec, max_segments, max_run=10):
    """Runs of steps punctuated by events: [Steps(4), Handover(), Steps(7), EditLR(...), ...]."""
    segment = st.tuples(runs_of_steps(spec, max_run), events_for(spec))
    return st.lists(segment, min_size=1, max_size=max_segments).map(
        lambda segs: [a for pair in segs for a in pair if not (isinstance(a, Steps) and not a.count)]
    )


@dataclass
class Scenario:
    kind: str
    lrs: list
    spec: object
    actions: list

    def __repr__(self):
        acts = "\n    ".join(f"#{i}: {a!r}" for i, a in enumerate(self.actions))
        return (
            f"Scenario(\n  spec={self.spec!r},\n  optimizer={self.kind}, lrs={self.lrs!r},"
            f"\n  actions=[\n    {acts}\n  ])"
        )


@st.composite
def scenarios(draw, name, max_groups_strategy=None, max_segments=8, max_run=10):
    n = draw(group_counts() if max_groups_strategy is None else max_groups_strategy)
    kind = draw(st.sampled_from(OPTIMIZER_KINDS))
    lrs = draw(st.lists(lr_values(), min_size=n, max_size=n))
    spec = draw(SPECS[name](n))
    acts = draw(action_sequences(spec, max_segments, max_run))
    return Scenario(kind, lrs, spec, acts)


def run_scenario(sc: Scenario):
    tw = Twins(sc.spec, kind=sc.kind, lrs=sc.lrs)
    if not tw.built:  # both constructors raised the same exception: nothing more to drive
        return tw
    for action in sc.actions:
        action.apply(tw)
    return tw


# --------------------------------------------------------------------------------------------
# The tests: one per class (+ the SWA pattern), and a slow mixed-class long run
# --------------------------------------------------------------------------------------------

PER_CLASS = [n for n in ALL_NAMES] + ["SWA pattern"]


@pytest.mark.parametrize("name", PER_CLASS)
def test_random_actions_match_torch_for(name):
    """Any valid configuration of <name>, any sequence of actions: identical to torch."""

    @settings()
    @given(sc=scenarios(name))
    def check(sc):
        run_scenario(sc)

    check()


@pytest.mark.slow
def test_random_configuration_of_any_class_with_many_groups_and_long_runs_matches_torch():
    """The long variant: any class, up to 256 groups, up to 30 events between runs of up to 25
    steps."""

    @settings()
    @given(
        sc=st.sampled_from(PER_CLASS).flatmap(
            lambda name: scenarios(
                name, max_groups_strategy=st.integers(1, 256), max_segments=30, max_run=25
            )
        )
    )
    def check(sc):
        run_scenario(sc)

    check()


def _kw(sc):
    return getattr(sc.spec, "kwargs", {})


def _has_plateau(sc, length=3):
    ms = [m for a in sc.actions if isinstance(a, Steps) for m in a.metrics]
    return any(
        type(x) is float and all(type(y) is float and y == x for y in ms[i : i + length])
        for i, x in enumerate(ms)
    )


EDGE_CASES = {
    # CyclicLR: all three modes, custom scale_fn in both scale modes, momentum on/off, SGD/Adam
    "cyclic triangular": ("CyclicLR", lambda sc: _kw(sc)["mode"] == "triangular"),
    "cyclic triangular2": ("CyclicLR", lambda sc: _kw(sc)["mode"] == "triangular2"),
    "cyclic exp_range": ("CyclicLR", lambda sc: _kw(sc)["mode"] == "exp_range"
                         and "scale_fn" not in _kw(sc)),
    "cyclic scale_fn cycle": ("CyclicLR", lambda sc: _kw(sc).get("scale_mode") == "cycle"),
    "cyclic scale_fn iterations": ("CyclicLR",
                                   lambda sc: _kw(sc).get("scale_mode") == "iterations"),
    "cyclic betas (Adam)": ("CyclicLR", lambda sc: _kw(sc)["cycle_momentum"] and sc.kind == "adam"),
    "cyclic momentum (SGD)": ("CyclicLR", lambda sc: _kw(sc)["cycle_momentum"] and sc.kind == "sgd"),
    "cyclic no momentum": ("CyclicLR", lambda sc: not _kw(sc)["cycle_momentum"]),
    # OneCycleLR
    "onecycle three_phase linear": ("OneCycleLR", lambda sc: _kw(sc)["three_phase"]
                                    and _kw(sc)["anneal_strategy"] == "linear"),
    "onecycle epochs*steps_per_epoch": ("OneCycleLR", lambda sc: "epochs" in _kw(sc)),
    "onecycle stepped past total_steps": (
        "OneCycleLR",
        lambda sc: "total_steps" in _kw(sc)
        and sum(a.count for a in sc.actions if isinstance(a, Steps)) > _kw(sc)["total_steps"],
    ),
    # CosineAnnealingWarmRestarts
    "warm restarts T_mult>1 fractional epoch": (
        "CosineAnnealingWarmRestarts",
        lambda sc: _kw(sc)["T_mult"] > 1
        and any(isinstance(a, StepEpoch) and a.epoch != int(a.epoch) for a in sc.actions),
    ),
    # MultiStepLR
    "multistep repeated milestones": (
        "MultiStepLR", lambda sc: len(set(_kw(sc)["milestones"])) < len(_kw(sc)["milestones"])
    ),
    # ReduceLROnPlateau
    **{
        f"plateau {m}/{t}": (
            "ReduceLROnPlateau",
            lambda sc, m=m, t=t: _kw(sc)["mode"] == m and _kw(sc)["threshold_mode"] == t,
        )
        for m in ("min", "max")
        for t in ("rel", "abs")
    },
    "plateau cooldown + min_lr list": ("ReduceLROnPlateau", lambda sc: _kw(sc)["cooldown"] > 0
                                       and isinstance(_kw(sc)["min_lr"], list)),
    "plateau metric plateau": ("ReduceLROnPlateau", _has_plateau),
    # composites and actions
    "sequential of 3": ("SequentialLR", lambda sc: len(sc.spec.children) == 3),
    "chained with nested sequential": (
        "ChainedScheduler", lambda sc: any(c.name == "SequentialLR" for c in sc.spec.children)
    ),
    **{
        f"action {a.__name__}": ("StepLR", lambda sc, a=a: any(isinstance(x, a) for x in sc.actions))
        for a in (Steps, StepEpoch, EditLR, ScaleLR, OptimizerStep, Handover, AddGroup, GetLR,
                  ReloadOptimizer)
    },
    "more than 32 groups": ("ExponentialLR", lambda sc: len(sc.lrs) > 32),
}


@pytest.mark.parametrize("name", sorted({n for n, _ in EDGE_CASES.values()}))
def test_generator_reaches_torch_edge_branches_of(name):
    """Guards the generator itself: every edge case listed in EDGE_CASES for this class is
    produced (deterministic generation, no shrinking)."""
    wanted = {case: pred for case, (n, pred) in EDGE_CASES.items() if n == name}
    seen = set()

    @settings(max_examples=100, phases=[Phase.generate], derandomize=True, database=None)
    @given(sc=scenarios(name))
    def collect(sc):
        seen.update(case for case, pred in wanted.items() if pred(sc))

    collect()
    assert not set(wanted) - seen, f"never generated: {sorted(set(wanted) - seen)}"
