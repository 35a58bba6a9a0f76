"""Named parity tests: each states one behaviour of torch's schedulers that schedx must reproduce.

Every test drives a torch twin and a schedx twin with ``Twins`` (twins.py), which compares after
each action: exception type and message, warnings, every param-group value (``==``),
``get_last_lr()`` and ``state_dict()``.  Expected values are always torch's, computed live.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import schedx

from twins import (
    ALL_NAMES,
    CANONICAL,
    CHAINABLE_NAMES,
    CLOSED_FORM_NAMES,
    EPOCH_NAMES,
    LAST_EPOCH_NAMES,
    SCHEDX,
    TORCH,
    Custom,
    Fn,
    Sched,
    SwaPattern,
    Twins,
    warning_summary,
)

# ---------------------------------------------------------------------------------------------
# CosineAnnealingLR
# ---------------------------------------------------------------------------------------------


def test_cosine_matches_torch_after_user_edits_lr():
    tw = Twins(Sched("CosineAnnealingLR", T_max=10, eta_min=0.001), n_groups=5)
    tw.step(3)
    tw.edit_lr(1, 0.37)
    tw.scale_lr(3, 0.5)
    tw.step(4)
    tw.edit_lr(0, 2)  # an int
    tw.step(20)


def test_cosine_keeps_oscillating_past_t_max():
    """Torch does not hold eta_min after T_max: the LR climbs back up (unlike optax)."""
    t_max = 5
    tw = Twins(Sched("CosineAnnealingLR", T_max=t_max, eta_min=0.0), lrs=[0.1, 0.25])
    lrs = []
    for _ in range(3 * t_max):
        tw.step()
        lrs.append(tw.b.opt.param_groups[1]["lr"])
    rising = lrs[t_max : 2 * t_max]  # epochs T_max+1 .. 2*T_max
    assert all(x < y for x, y in zip(rising, rising[1:])), lrs


def test_cosine_recursion_is_not_the_closed_form():
    """Plain step() follows torch's recursive formula (which differs from the closed form in the
    last bits), step(epoch) the closed form; both must match torch."""
    tw = Twins(Sched("CosineAnnealingLR", T_max=13, eta_min=0.0003), n_groups=7)
    tw.step(40)
    tw.step_epoch(7)
    tw.step(5)


def test_cosine_resumed_with_last_epoch_uses_closed_form_on_first_step_like_torch():
    tw = Twins(Sched("CosineAnnealingLR", T_max=9), n_groups=3)
    tw.step(4)
    tw.build(last_epoch=4)
    tw.step(12)


def test_cosine_t_max_zero_raises_an_instance_of_torchs_exception():
    """Torch fails late with ZeroDivisionError; schedx may word it better but must raise an
    instance of the same type (checked by Twins)."""
    tw = Twins(Sched("CosineAnnealingLR", T_max=0), n_groups=2)
    oa, ob = tw.step()
    assert isinstance(oa.exc, ZeroDivisionError)
    tw.step(2)


# ---------------------------------------------------------------------------------------------
# OneCycleLR
# ---------------------------------------------------------------------------------------------


def test_onecycle_value_at_exactly_total_steps_matches_torch():
    """Torch allows step number == total_steps (one past the schedule's end) and overshoots."""
    tw = Twins(Sched("OneCycleLR", max_lr=0.4, total_steps=9), n_groups=4)
    oa, ob = tw.step(9)
    assert oa.exc is None


def test_onecycle_raises_after_total_steps_like_torch():
    tw = Twins(Sched("OneCycleLR", max_lr=[0.1, 0.2, 0.3], total_steps=6), n_groups=3)
    tw.step(6)
    oa, ob = tw.step()
    assert isinstance(oa.exc, ValueError) and "Tried to step" in str(oa.exc)
    tw.step(3)  # keeps raising, with the same message and state


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal_strategy", ["cos", "linear"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_onecycle_phases_and_momentum_match_torch(three_phase, anneal_strategy, kind):
    spec = Sched(
        "OneCycleLR",
        max_lr=0.5,
        epochs=3,
        steps_per_epoch=7,
        pct_start=0.4,
        anneal_strategy=anneal_strategy,
        three_phase=three_phase,
        base_momentum=0.8,
        max_momentum=0.93,
    )
    tw = Twins(spec, kind=kind, n_groups=5)
    key = "betas" if kind == "adam" else "momentum"
    momenta = set()
    for _ in range(21):
        tw.step()
        momenta.add(repr(tw.b.opt.param_groups[0][key]))
    assert len(momenta) > 1, "momentum should be cycled"


def test_onecycle_without_cycle_momentum_leaves_momentum_alone_like_torch():
    tw = Twins(Sched("OneCycleLR", max_lr=0.5, total_steps=12, cycle_momentum=False), n_groups=3)
    tw.step(12)


# ---------------------------------------------------------------------------------------------
# CosineAnnealingWarmRestarts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t_mult", [1, 2, 3])
def test_warm_restarts_fractional_epochs_match_torch(t_mult):
    """The documented per-batch pattern: scheduler.step(epoch + i / iters)."""
    tw = Twins(Sched("CosineAnnealingWarmRestarts", T_0=3, T_mult=t_mult, eta_min=1e-4), n_groups=4)
    iters = 7
    for epoch in range(12):
        for i in range(iters):
            tw.step_epoch(epoch + i / iters)


def test_warm_restarts_interleaves_step_and_step_epoch_like_torch():
    tw = Twins(Sched("CosineAnnealingWarmRestarts", T_0=4, T_mult=2), n_groups=3)
    tw.step(10)
    tw.step_epoch(26)
    tw.step(5)
    tw.step_epoch(3.5)
    tw.step(7)


def test_warm_restarts_math_log_rounding_matches_torch():
    """Torch finds the cycle with int(math.log(x, T_mult)), which rounds down at some exact cycle
    boundaries; schedx must reproduce the same (rounded-down) cycle."""
    t0, t_mult = 1, 3
    rounded_down = []
    for n in range(1, 12):
        boundary = t0 * (t_mult**n - 1) // (t_mult - 1)  # first epoch of cycle n
        if int(math.log(boundary / t0 * (t_mult - 1) + 1, t_mult)) != n:
            rounded_down.append(boundary)
    assert rounded_down, "expected math.log to round down at some boundary"
    tw = Twins(Sched("CosineAnnealingWarmRestarts", T_0=t0, T_mult=t_mult), n_groups=2)
    for epoch in rounded_down:
        tw.step_epoch(epoch)
        tw.step()


def test_warm_restarts_negative_epoch_raises_like_torch():
    tw = Twins(Sched("CosineAnnealingWarmRestarts", T_0=3), n_groups=2)
    oa, ob = tw.step_epoch(-1)
    assert isinstance(oa.exc, ValueError)


# ---------------------------------------------------------------------------------------------
# Other single schedulers
# ---------------------------------------------------------------------------------------------


def test_multistep_repeated_milestones_decay_by_gamma_power_like_torch():
    tw = Twins(Sched("MultiStepLR", milestones=[3, 3, 3, 6, 1], gamma=0.6), n_groups=4)
    tw.step(9)
    tw.step_epoch(3)  # closed form with repeated milestones
    tw.step(2)


def test_constant_lr_factor_zero_fails_at_total_iters_like_torch():
    tw = Twins(Sched("ConstantLR", factor=0.0, total_iters=3), n_groups=2)
    tw.step(5)


@pytest.mark.parametrize("total_iters", [1, 4])
def test_linear_and_polynomial_hold_after_total_iters_like_torch(total_iters):
    for spec in (
        Sched("LinearLR", start_factor=0.25, end_factor=0.75, total_iters=total_iters),
        Sched("PolynomialLR", total_iters=total_iters, power=2.5),
    ):
        tw = Twins(spec, n_groups=3)
        tw.step(total_iters + 6)


def test_lambda_lr_calls_per_group_lambdas_like_torch():
    lambdas = [Fn("exp", 0.9), Fn("warmup", 0.0, 4), Fn("obj_exp", 0.8), Fn("int", 0.0, 3)]
    tw = Twins(Sched("LambdaLR", lr_lambda=lambdas), n_groups=4)
    tw.step(10)
    tw.edit_lr(2, 5.0)  # LambdaLR ignores user edits (it scales base_lrs)
    tw.step(3)


def test_multiplicative_lr_builds_on_user_edits_like_torch():
    tw = Twins(Sched("MultiplicativeLR", lr_lambda=Fn("every", 0.5, 3)), n_groups=4)
    tw.step(4)
    tw.edit_lr(1, 0.9)
    tw.step(6)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_cyclic_modes_and_momentum_match_torch(mode, kind):
    spec = Sched(
        "CyclicLR",
        base_lr=[0.01, 0.02, 0.005],
        max_lr=0.2,
        step_size_up=3,
        step_size_down=5,
        mode=mode,
        gamma=0.97,
    )
    tw = Twins(spec, kind=kind, n_groups=3)
    tw.step(30)
    key = "betas" if kind == "adam" else "momentum"
    momenta = {repr(tw.b.opt.param_groups[0][key])}
    for _ in range(3):
        tw.step()
        momenta.add(repr(tw.b.opt.param_groups[0][key]))
    assert len(momenta) > 1, "momentum should be cycled"


@pytest.mark.parametrize("scale_mode", ["cycle", "iterations"])
@pytest.mark.parametrize("fn", [Fn("inverse", 0.3), Fn("obj_inverse", 0.7), Fn("exp", 0.9)])
def test_cyclic_custom_scale_fn_matches_torch(scale_mode, fn):
    spec = Sched(
        "CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=2, scale_fn=fn, scale_mode=scale_mode
    )
    tw = Twins(spec, kind="adam", n_groups=4)
    tw.step(25)


def test_cyclic_without_cycle_momentum_matches_torch():
    spec = Sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=4, cycle_momentum=False)
    tw = Twins(spec, kind="sgd", n_groups=3)
    tw.step(12)


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_reduce_on_plateau_modes_cooldown_and_min_lr_list_match_torch(mode, threshold_mode):
    spec = Sched(
        "ReduceLROnPlateau",
        mode=mode,
        threshold_mode=threshold_mode,
        factor=0.5,
        patience=1,
        cooldown=2,
        threshold=0.05,
        min_lr=[0.0, 0.02, 0.05, 0.01],
    )
    tw = Twins(spec, n_groups=4)
    tw.step(40)  # the METRICS sequence: plateaus, regressions, improvements


def test_reduce_on_plateau_accepts_tensor_and_int_metrics_like_torch():
    tw = Twins(Sched("ReduceLROnPlateau", patience=0), n_groups=3)
    for metric in [torch.tensor(1.0), 2, torch.tensor(3.0), 3, float("nan"), 0]:
        tw.step(metric=metric)


def test_reduce_on_plateau_eps_skips_tiny_reductions_like_torch():
    tw = Twins(Sched("ReduceLROnPlateau", patience=0, factor=0.5, eps=0.01), lrs=[0.1, 0.015, 1])
    for metric in range(8):
        tw.step(metric=float(metric))


def test_reduce_on_plateau_min_lr_list_after_add_param_group_raises_like_torch():
    tw = Twins(Sched("ReduceLROnPlateau", patience=0, min_lr=[0.0, 0.001]), n_groups=2)
    tw.step(metric=1.0)
    tw.add_param_group(0.5)
    oa, ob = tw.step(metric=2.0)
    # (RuntimeError from torch 2.6, which checks the length; IndexError before.)
    assert oa.exc is not None


def test_swalr_usual_swa_pattern_matches_torch():
    spec = SwaPattern(
        Sched("CosineAnnealingLR", T_max=20),
        Sched("SWALR", swa_lr=0.05, anneal_epochs=4, anneal_strategy="linear"),
        swa_start=6,
    )
    tw = Twins(spec, n_groups=4)
    tw.optimizer_step()
    tw.step(20)


@pytest.mark.parametrize("anneal_epochs", [0, 1, 5])
@pytest.mark.parametrize("anneal_strategy", ["cos", "linear"])
def test_swalr_annealing_matches_torch(anneal_epochs, anneal_strategy):
    spec = Sched(
        "SWALR", swa_lr=[0.05, 0.01, 0.2], anneal_epochs=anneal_epochs,
        anneal_strategy=anneal_strategy,
    )
    tw = Twins(spec, n_groups=3)
    tw.step(anneal_epochs + 4)


# ---------------------------------------------------------------------------------------------
# Composites
# ---------------------------------------------------------------------------------------------


def test_sequential_lr_handover_matches_torch():
    """At each milestone torch hands over with the next child's closed form (_update_lr(0))."""
    spec = Sched(
        "SequentialLR",
        children=[
            Sched("ConstantLR", factor=0.5, total_iters=2),
            Sched("ExponentialLR", gamma=0.8),
            Sched("CosineAnnealingLR", T_max=6, eta_min=0.001),
        ],
        milestones=[3, 7],
    )
    tw = Twins(spec, n_groups=4)
    tw.step(6)
    tw.edit_lr(1, 0.5)  # edited just before the second milestone
    tw.step(12)


def test_sequential_lr_with_non_chainable_children_matches_torch():
    spec = Sched(
        "SequentialLR",
        children=[
            Sched("LinearLR", start_factor=0.1, total_iters=4),
            Sched("OneCycleLR", max_lr=0.3, total_steps=8),
            Sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=2),
        ],
        milestones=[4, 9],
    )
    tw = Twins(spec, kind="adam", n_groups=3)
    tw.step(16)


def test_chained_scheduler_matches_torch_with_user_edits_between_steps():
    spec = Sched(
        "ChainedScheduler",
        children=[
            Sched("ConstantLR", factor=0.3, total_iters=3),
            Sched("ExponentialLR", gamma=0.9),
            Sched("CosineAnnealingLR", T_max=5),
        ],
        pass_optimizer=True,
    )
    tw = Twins(spec, n_groups=4)
    tw.step(4)
    tw.edit_lr(2, 0.01)
    tw.step(8)


@pytest.mark.parametrize("composite", ["SequentialLR", "ChainedScheduler"])
@pytest.mark.parametrize(
    "outer, inner", [(TORCH, SCHEDX), (SCHEDX, TORCH)], ids=["torch-over-schedx", "schedx-over-torch"]
)
def test_mixed_torch_and_schedx_composites_match_torch(composite, outer, inner):
    """Mixing is allowed: a composite of one implementation over children of the other gives
    torch's values (the torch twin runs pure torch)."""

    def build(impl, opt):
        o, i = (TORCH, TORCH) if impl is TORCH else (outer, inner)
        kids = [
            i.LinearLR(opt, start_factor=0.2, total_iters=3),
            i.ExponentialLR(opt, gamma=0.9),
            i.CosineAnnealingLR(opt, T_max=5),
        ]
        if composite == "SequentialLR":
            return o.SequentialLR(opt, kids, milestones=[3, 6])
        return o.ChainedScheduler(kids)

    tw = Twins(Custom(f"{outer}.{composite} over {inner} children", build), n_groups=3)
    tw.optimizer_step()
    tw.step(12)


# ---------------------------------------------------------------------------------------------
# Behaviours shared by every class
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAST_EPOCH_NAMES)
def test_resume_with_last_epoch_and_initial_lr_matches_torch(name):
    """Constructing with last_epoch=k on groups that carry initial_lr (a resumed run).  Torch
    advances some classes one step on construction and not others; SequentialLR is off by one.
    schedx copies all of it."""
    tw = Twins(CANONICAL[name], n_groups=4)
    tw.optimizer_step()
    tw.step(5)
    tw.build(last_epoch=5)
    tw.step(8)


@pytest.mark.parametrize("name", LAST_EPOCH_NAMES)
def test_last_epoch_without_initial_lr_raises_like_torch(name):
    tw = Twins(CANONICAL[name], n_groups=2, build=False)
    oa, ob = tw.build(last_epoch=3)
    assert oa.exc is not None


@pytest.mark.parametrize("name", ALL_NAMES)
def test_add_param_group_after_construction_matches_torch(name):
    """Most classes then fail (zip strict, missing keys); the ones that read only group["lr"]
    carry on.  Either way: torch's exception, torch's message, torch's state."""
    tw = Twins(CANONICAL[name], n_groups=3)
    tw.optimizer_step()
    tw.step(2)
    tw.add_param_group(0.42)
    tw.step(4)


@pytest.mark.parametrize("name", EPOCH_NAMES)
def test_epoch_deprecation_warning_matches_torch(name):
    tw = Twins(CANONICAL[name], n_groups=3)
    tw.optimizer_step()
    tw.step(2)
    oa, ob = tw.step_epoch(4)
    tw.step(2)
    tw.step_epoch(1)


def test_epoch_deprecation_warning_is_emitted_by_torch_for_plain_classes():
    """Guards the test above: torch does warn for a plain class, so the comparison has teeth."""
    tw = Twins(CANONICAL["StepLR"], n_groups=2)
    tw.optimizer_step()
    oa, ob = tw.step_epoch(3)
    assert any("epoch parameter" in m for _, m in warning_summary(oa.warnings))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_step_before_optimizer_step_warning_matches_torch(name):
    tw = Twins(CANONICAL[name], n_groups=2)
    oa, ob = tw.step()  # no optimizer.step() yet: torch warns for most classes
    tw.step()
    tw.optimizer_step()
    tw.step(2)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_overridden_optimizer_step_warning_matches_torch(name):
    tw = Twins(CANONICAL[name], n_groups=2)

    def override(side):
        side.opt.step = lambda closure=None: None  # e.g. a framework patching optimizer.step

    tw.do(override, "optimizer.step = <plain function>")
    tw.step(3)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_warnings_point_at_the_callers_line_like_torch(name):
    """stacklevel: torch's warnings name the line that called step(), not library internals."""
    tw = Twins(CANONICAL[name], n_groups=2)
    outcomes = [tw.step()]
    if CANONICAL[name].accepts_epoch:
        outcomes.append(tw.step_epoch(2))
    for oa, ob in outcomes:
        where_t = [_caller_or_library(w) for w in oa.warnings]
        where_s = [_caller_or_library(w) for w in ob.warnings]
        assert where_t == where_s


LIBRARY_DIRS = (os.path.dirname(torch.__file__), os.path.dirname(schedx.__file__))


def _caller_or_library(w):
    """A warning's location: the caller's (file, line), or "library" where torch itself points
    inside library code (a composite warns from the line that steps its children)."""
    if os.path.abspath(w.filename).startswith(LIBRARY_DIRS):
        return "library"
    return (w.filename, w.lineno)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_closed_form_availability_matches_torch(name):
    assert hasattr(getattr(SCHEDX, name), "_get_closed_form_lr") == hasattr(
        getattr(TORCH, name), "_get_closed_form_lr"
    )


@pytest.mark.parametrize("name", CLOSED_FORM_NAMES)
def test_closed_form_lr_equals_torch(name):
    tw = Twins(CANONICAL[name], n_groups=5)
    tw.step(3)
    for epoch in [0, 1, 2, 3, 5, 8, 13, 40]:
        def closed_form(side, epoch=epoch):
            side.sched.last_epoch = epoch
            return side.sched._get_closed_form_lr()

        tw.do(closed_form, f"last_epoch = {epoch}; _get_closed_form_lr()")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_get_lr_outside_step_warns_like_torch(name):
    """get_lr() called by the user: torch warns (and, for CyclicLR/OneCycleLR, writes momentum)."""
    tw = Twins(CANONICAL[name], n_groups=3)
    tw.optimizer_step()
    tw.step(2)
    tw.get_lr()
    tw.step(2)


def test_get_lr_warning_is_emitted_by_torch():
    tw = Twins(CANONICAL["ExponentialLR"], n_groups=2)
    oa, ob = tw.get_lr()
    assert any("get_last_lr" in m for _, m in warning_summary(oa.warnings))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_optimizer_load_state_dict_mid_run_matches_torch(name):
    """optimizer.load_state_dict replaces every param-group dict: nothing may be cached on them."""
    tw = Twins(CANONICAL[name], n_groups=4)
    tw.optimizer_step()
    tw.step(3)
    tw.reload_optimizer()
    tw.step(3)
    tw.reload_optimizer()
    tw.edit_lr(0, 0.77)
    tw.step(3)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_many_groups_match_torch(name):
    tw = Twins(CANONICAL[name], n_groups=500)
    tw.optimizer_step()
    tw.step(12)


LONG_RUN_SPECS = {
    **CANONICAL,
    "OneCycleLR": Sched("OneCycleLR", max_lr=0.3, total_steps=600, pct_start=0.3),
    "ExponentialLR": Sched("ExponentialLR", gamma=0.999),
    "CosineAnnealingLR, past T_max": Sched("CosineAnnealingLR", T_max=97, eta_min=0.0001),
    "CyclicLR exp_range on Adam": Sched(
        "CyclicLR", base_lr=0.001, max_lr=0.1, step_size_up=23, mode="exp_range", gamma=0.999
    ),
}


@pytest.mark.parametrize("name", LONG_RUN_SPECS)
def test_long_trajectory_matches_torch_bit_for_bit(name):
    """600 steps: the recursive formulas accumulate rounding exactly as torch's do."""
    kind = "adam" if "Adam" in name else "sgd"
    tw = Twins(LONG_RUN_SPECS[name], kind=kind, n_groups=7)
    tw.optimizer_step()
    tw.step(600)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_class_matches_torch_on_both_optimizers(name, kind):
    tw = Twins(CANONICAL[name], kind=kind, n_groups=6)
    tw.optimizer_step()
    tw.step(25)


# ---------------------------------------------------------------------------------------------
# LR values that are not Python floats
# ---------------------------------------------------------------------------------------------

# float32 tensor LRs are not here: schedx computes them in double (tensor mode) where torch computes in
# float32, by design; test_tensor_mode.py holds them to the float path rounded once.
NON_FLOAT_LRS = {
    "int": lambda: [1, 2, 3],
    "float64 tensor": lambda: [torch.tensor(0.1, dtype=torch.float64)] * 3,
    "numpy float32": lambda: [np.float32(0.1), np.float32(0.2), np.float32(0.3)],
    "numpy float64": lambda: [np.float64(0.1), np.float64(0.2), np.float64(0.3)],
    "mixed float and tensor": lambda: [0.1, torch.tensor(0.2), 0.3],
}


@pytest.mark.parametrize("lrs", NON_FLOAT_LRS)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_non_float_lrs_match_torch(name, lrs):
    """Ints, numpy scalars and float64 tensors: torch's values and types (float64 tensors through
    tensor mode, whose double arithmetic is torch's)."""
    tw = Twins(CANONICAL[name], lrs=NON_FLOAT_LRS[lrs]())
    tw.optimizer_step()
    tw.step(8)
    if CANONICAL[name].accepts_epoch:
        tw.step_epoch(3)
        tw.step(2)


# ---------------------------------------------------------------------------------------------
# User subclasses
# ---------------------------------------------------------------------------------------------

OVERRIDABLE = [n for n in CHAINABLE_NAMES] + ["SWALR"]


@pytest.mark.parametrize("name", OVERRIDABLE)
def test_subclass_overriding_get_lr_is_honoured_like_torch(name):
    """A user subclass that changes get_lr() must get its own rule, as under torch (an engine that
    bypasses get_lr() would silently ignore it)."""

    def build(impl, opt, **overrides):
        base = CANONICAL[name]
        cls = getattr(impl, name)

        class Halved(cls):
            def get_lr(self):
                return [lr * 0.5 for lr in super().get_lr()]

        Halved.__name__ = name
        spec = Sched(name, **base.kwargs)
        return spec.build(_Single(impl, name, Halved), opt, **overrides)

    tw = Twins(Custom(f"{name} subclass with get_lr() halved", build), n_groups=3)
    tw.optimizer_step()
    tw.step(6)


class _Single:
    """An Impl look-alike whose class `name` is replaced (for subclass tests)."""

    def __init__(self, impl, name, cls):
        self.impl, self.name_, self.cls = impl, name, cls

    def __getattr__(self, attr):
        return self.cls if attr == self.name_ else getattr(self.impl, attr)


@pytest.mark.parametrize("base", ["LRScheduler", "_LRScheduler"])
def test_user_subclass_of_lrscheduler_base_matches_torch(base):
    """Custom schedulers written against schedx.lr_scheduler.LRScheduler behave as under torch."""

    def build(impl, opt, **overrides):
        Base = getattr(impl.lr_module, base)

        class Warmup(Base):
            def __init__(self, optimizer, warmup, last_epoch=-1):
                self.warmup = warmup
                super().__init__(optimizer, last_epoch)

            def get_lr(self):
                scale = min(1.0, (self.last_epoch + 1) / self.warmup)
                return [b * scale for b in self.base_lrs]

        return Warmup(opt, 4, **overrides)

    tw = Twins(Custom(f"user {base} subclass", build), n_groups=3)
    tw.optimizer_step()
    tw.step(3)
    tw.step_epoch(6)
    tw.step(2)
