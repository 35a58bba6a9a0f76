"""Overrides of what torch's step calls.

torch's ``step()`` calls methods of the scheduler: ``_update_lr``, ``get_lr``, ``_get_closed_form_lr``,
and per class ``ReduceLROnPlateau._is_better`` / ``in_cooldown`` / ``_reduce_lr``, ``CyclicLR.scale_fn``,
``OneCycleLR._anneal_func`` / ``_annealing_cos`` / ``_annealing_linear``, ``SWALR._get_initial_lr``; a
composite calls its children's ``step``, ``_update_lr`` and ``get_last_lr``. A user overrides one in a
subclass, in a mixin placed before the scheduler class, or on the instance; torch then calls the
override, and so must schedx: each case below steps a schedx scheduler and its torch twin carrying the
same override and compares the LRs (and momenta) after every step and the override's calls.
"""
from __future__ import annotations

import types
import warnings

import pytest
import torch

import schedx
import schedx.swa_utils

TORCH = (torch.optim.lr_scheduler, torch.optim.swa_utils)
SCHEDX = (schedx.lr_scheduler, schedx.swa_utils)


def _cls(impl, name):
    lr_module, swa_module = impl
    return getattr(swa_module if name == "SWALR" else lr_module, name)


def _optimizer():
    groups = [{"params": [torch.zeros(1)], "lr": 0.1 * (k + 1)} for k in range(3)]
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9)


CONSTRUCTORS = {
    "StepLR": lambda C, o: C(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda C, o: C(o, milestones=[2, 4], gamma=0.5),
    "ConstantLR": lambda C, o: C(o, factor=0.5, total_iters=3),
    "LinearLR": lambda C, o: C(o, start_factor=0.25, total_iters=4),
    "ExponentialLR": lambda C, o: C(o, gamma=0.9),
    "PolynomialLR": lambda C, o: C(o, total_iters=6, power=2.0),
    "CosineAnnealingLR": lambda C, o: C(o, T_max=5, eta_min=0.01),
    "CosineAnnealingWarmRestarts": lambda C, o: C(o, T_0=3, T_mult=2),
    "LambdaLR": lambda C, o: C(o, lambda e: 0.9**e),
    "MultiplicativeLR": lambda C, o: C(o, lambda e: 0.9),
    "CyclicLR": lambda C, o: C(o, base_lr=0.01, max_lr=0.1, step_size_up=3),
    "OneCycleLR": lambda C, o: C(o, max_lr=0.1, total_steps=20),
    "OneCycleLR-linear": lambda C, o: C(o, max_lr=0.1, total_steps=20, anneal_strategy="linear"),
    "ReduceLROnPlateau": lambda C, o: C(o, factor=0.5, patience=1, cooldown=1),
    "SWALR": lambda C, o: C(o, swa_lr=0.05, anneal_epochs=3),
}

CLOSED_FORM = [
    "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR",
    "CosineAnnealingLR",
]
LR_SCHEDULER_STEP = [n for n in CONSTRUCTORS if n not in ("CosineAnnealingWarmRestarts", "ReduceLROnPlateau")]


def _torch_has(name, hook):
    """Whether the installed torch's class `name` has the method `hook`."""
    return any(hook in k.__dict__ for k in _cls(TORCH, name.split("-")[0]).__mro__)


# (class, the method torch's step calls): every one schedx must honour, by the installed torch's names
# (`_update_lr` from torch 2.9; ReduceLROnPlateau's `is_better` became `_is_better` in 2.9).
HOOKS = [
    (n, h)
    for n, h in (
        [(n, "get_lr") for n in CONSTRUCTORS if n != "ReduceLROnPlateau"]
        + [(n, "_update_lr") for n in LR_SCHEDULER_STEP]
        + [(n, "_get_closed_form_lr") for n in CLOSED_FORM]
        + [("ReduceLROnPlateau", h) for h in ("_is_better", "is_better", "in_cooldown", "_reduce_lr")]
        + [("CyclicLR", "scale_fn"), ("OneCycleLR", "_anneal_func"), ("OneCycleLR", "_annealing_cos")]
        + [("OneCycleLR-linear", "_annealing_linear"), ("SWALR", "_get_initial_lr")]
    )
    if _torch_has(n, h)
]


def _changed(value):
    """What the override returns instead of torch's `value`: a visibly different result."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 0.5
    if isinstance(value, list):
        return [v * 0.5 for v in value]
    return value


def _override(torch_class, hook, calls):
    """The override of `hook` (a function, staticmethod or property, as torch's is) that records its
    calls and changes torch's result."""
    original = next(k.__dict__[hook] for k in torch_class.__mro__ if hook in k.__dict__)
    if isinstance(original, staticmethod):

        def static(*args):
            calls.append(hook)
            return _changed(original.__func__(*args))

        return staticmethod(static)
    if isinstance(original, property):
        return property(lambda self: calls.append(hook) or _changed(original.fget(self)))

    def method(self, *args, **kwargs):
        calls.append(hook)
        return _changed(original(self, *args, **kwargs))

    return method


def _with_override(impl, name, hook, how, calls):
    """A scheduler of class `name` whose `hook` is overridden `how`: in a subclass, a mixin, or on
    the instance (after construction, as a user sets it)."""
    base = _cls(impl, name.split("-")[0])
    torch_class = _cls(TORCH, name.split("-")[0])
    override = _override(torch_class, hook, calls)
    if how == "subclass":
        cls = type("Sub", (base,), {hook: override})
    elif how == "mixin":
        cls = type("Sub", (type("Mixin", (), {hook: override}), base), {})
    else:
        cls = base
    scheduler = CONSTRUCTORS[name](cls, _optimizer())
    if how == "instance":
        if isinstance(override, staticmethod):
            setattr(scheduler, hook, override.__func__)
        else:
            setattr(scheduler, hook, types.MethodType(override, scheduler))
    return scheduler


def _trajectory(impl, name, hook, how, steps=12):
    calls: list[str] = []
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = _with_override(impl, name, hook, how, calls)
        optimizer = scheduler.optimizer
        for k in range(steps):
            optimizer.step()
            try:
                if name == "ReduceLROnPlateau":
                    scheduler.step([3.0, 2.0, 2.5, 2.5, 1.0, 1.5][k % 6])
                elif hook == "_get_closed_form_lr":
                    scheduler.step(k + 1)
                else:
                    scheduler.step()
            except Exception as error:  # noqa: BLE001 - compared with torch's
                out.append((type(error), str(error)))
            groups = [(g["lr"], g.get("momentum"), g.get("betas")) for g in optimizer.param_groups]
            out.append((groups, list(scheduler.get_last_lr())))
    return out, calls


@pytest.mark.parametrize("how", ["subclass", "mixin", "instance"])
@pytest.mark.parametrize("name, hook", HOOKS, ids=[f"{n}.{h}" for n, h in HOOKS])
def test_an_overridden_step_method_is_called_as_torch_calls_it(name, hook, how):
    if hook == "in_cooldown" and how == "instance":
        pytest.skip("a property: an instance attribute cannot override it, in torch either")
    expected = _trajectory(TORCH, name, hook, how)
    assert expected[1], "the override must be called by torch's step"
    assert _trajectory(SCHEDX, name, hook, how) == expected


def _composite_trajectory(impl, composite, child_override, steps=10):
    """A composite of StepLR and ExponentialLR whose first child carries `child_override`
    (hook, how)."""
    calls: list[str] = []
    hook, how = child_override
    optimizer = _optimizer()
    override = _override(_cls(TORCH, "StepLR"), hook, calls)
    cls = _cls(impl, "StepLR")
    if how == "subclass":
        cls = type("Sub", (cls,), {hook: override})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = cls(optimizer, step_size=2, gamma=0.5)
        second = _cls(impl, "ExponentialLR")(optimizer, gamma=0.9)
        children = [first, second] if composite == "ChainedScheduler" else [second, first]
        if composite == "ChainedScheduler":
            scheduler = _cls(impl, composite)(children)
        else:
            scheduler = _cls(impl, composite)(optimizer, children, milestones=[3])
        if how == "instance":
            setattr(first, hook, types.MethodType(override, first))
        out = []
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
            out.append(([g["lr"] for g in optimizer.param_groups], list(scheduler.get_last_lr())))
    return out, calls


@pytest.mark.parametrize("how", ["subclass", "instance"])
@pytest.mark.parametrize(
    "composite, hook",
    [
        (composite, hook)
        for composite, hook in (
            ("ChainedScheduler", "step"),
            ("ChainedScheduler", "get_lr"),
            ("ChainedScheduler", "_update_lr"),
            ("SequentialLR", "step"),
            ("SequentialLR", "get_lr"),
            ("SequentialLR", "_update_lr"),
            ("SequentialLR", "get_last_lr"),
            ("SequentialLR", "_get_closed_form_lr"),
        )
        if _torch_has("StepLR", hook)
    ],
)
def test_a_composite_calls_its_childs_overridden_methods_as_torch_does(composite, hook, how):
    expected = _composite_trajectory(TORCH, composite, (hook, how))
    assert expected[1], "the override must be called by torch's step"
    assert _composite_trajectory(SCHEDX, composite, (hook, how)) == expected


def test_a_mixins_get_lr_is_called_with_the_schedx_class_behind_it():
    class Warmup:
        def get_lr(self):
            lrs = super().get_lr()
            if self.last_epoch < 3:
                return [lr * (self.last_epoch + 1) / 3 for lr in lrs]
            return lrs

    def lrs(step_lr):
        cls = type("WarmupStepLR", (Warmup, step_lr), {})
        optimizer = _optimizer()
        scheduler = cls(optimizer, step_size=2, gamma=0.5)
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(8):
                optimizer.step()
                scheduler.step()
                out.append([g["lr"] for g in optimizer.param_groups])
        return out

    assert lrs(schedx.StepLR) == lrs(torch.optim.lr_scheduler.StepLR)


@pytest.mark.parametrize("composite", ["ChainedScheduler", "SequentialLR"])
def test_a_childs_instance_override_keeps_a_composite_with_tensor_lrs_on_torchs_code(composite):
    def run(impl):
        calls: list[str] = []
        lrs = [torch.tensor(0.1 * (k + 1), dtype=torch.float64) for k in range(2)]
        groups = [{"params": [torch.zeros(1)], "lr": lr} for lr in lrs]
        optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = _cls(impl, "StepLR")(optimizer, step_size=2, gamma=0.5)
            second = _cls(impl, "ExponentialLR")(optimizer, gamma=0.9)
            if composite == "ChainedScheduler":
                scheduler = _cls(impl, composite)([first, second])
            else:
                scheduler = _cls(impl, composite)(optimizer, [second, first], milestones=[2])
            override = _override(_cls(TORCH, "StepLR"), "get_lr", calls)
            first.get_lr = types.MethodType(override, first)
            out = []
            for _ in range(8):
                optimizer.step()
                scheduler.step()
                out.append([g["lr"].item() for g in optimizer.param_groups])
        return out, calls

    assert run(SCHEDX) == run(TORCH)


def test_an_instance_override_set_in_tensor_mode_is_called_from_the_next_step():
    def run(impl):
        calls: list[str] = []
        lrs = [torch.tensor(0.1 * (k + 1), dtype=torch.float64) for k in range(2)]
        optimizer = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lr} for lr in lrs], lr=0.1)
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler = _cls(impl, "ExponentialLR")(optimizer, gamma=0.9)
            for k in range(8):
                if k == 4:
                    override = _override(_cls(TORCH, "ExponentialLR"), "get_lr", calls)
                    scheduler.get_lr = types.MethodType(override, scheduler)
                optimizer.step()
                scheduler.step()
                out.append([g["lr"].item() for g in optimizer.param_groups])
        return out, calls

    assert run(SCHEDX) == run(TORCH)
