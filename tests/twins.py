"""The twins harness: the library the schedx test suite is written with.

Everything here serves one idea: build two identical optimizers ("twins"), put a torch scheduler on
one and a schedx scheduler on the other, do the same thing to both, and demand identical results
(values with ``==``, the same exceptions, the same warnings).  Torch computes every expected value
live; nothing is hard-coded.

Main pieces
-----------
``TORCH`` / ``SCHEDX``       the two implementations, each a namespace of the 16 scheduler classes.
``Sched`` / ``Fn``           a plain-data description of a scheduler (hyperparameters, children,
                             user functions) that can be built with either implementation.
``Twins``                    two optimizers + two schedulers driven in lock-step; every action is
                             compared (outcome, warnings, param groups, ``get_last_lr()``,
                             ``state_dict()``).
``CANONICAL``                one representative, valid spec per scheduler class.

The hypothesis profile the suite runs under (``PROFILE``) is set up in conftest.py.
"""

from __future__ import annotations

import copy
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.optim.lr_scheduler as torch_lr
import torch.optim.swa_utils as torch_swa

import schedx._stepping as schedx_stepping
import schedx.lr_scheduler as schedx_lr
import schedx.swa_utils as schedx_swa

# The hypothesis profile in use (conftest.py registers and loads it).
PROFILE = os.environ.get("SCHEDX_HYPOTHESIS_PROFILE", "ci")

# --------------------------------------------------------------------------------------------
# The two implementations
# --------------------------------------------------------------------------------------------

CHAINABLE_NAMES = [
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "CyclicLR",
    "OneCycleLR",
    "CosineAnnealingWarmRestarts",
]
COMPOSITE_NAMES = ["SequentialLR", "ChainedScheduler"]
ALL_NAMES = CHAINABLE_NAMES + COMPOSITE_NAMES + ["ReduceLROnPlateau", "SWALR"]  # the 16 classes
assert len(ALL_NAMES) == 16

# Classes whose constructor takes ``last_epoch`` (resume support).
LAST_EPOCH_NAMES = [n for n in ALL_NAMES if n not in ("ChainedScheduler", "ReduceLROnPlateau")]
# Classes whose ``step`` accepts the deprecated ``epoch`` argument.
EPOCH_NAMES = [n for n in ALL_NAMES if n not in COMPOSITE_NAMES]
# Classes with a closed form in torch (used by ``step(epoch)`` and SequentialLR's hand-over).
CLOSED_FORM_NAMES = [
    n for n in ALL_NAMES if hasattr(getattr(torch_lr, n, None), "_get_closed_form_lr")
]


class Impl:
    """One implementation: ``impl.StepLR`` etc. for all 16 classes."""

    def __init__(self, name: str, lr_module, swa_module):
        self.name = name
        self.lr_module = lr_module
        self.swa_module = swa_module
        self.classes = {n: getattr(lr_module, n) for n in ALL_NAMES if n != "SWALR"}
        self.classes["SWALR"] = swa_module.SWALR

    def __getattr__(self, name):
        try:
            return self.__dict__["classes"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self):
        return self.name


TORCH = Impl("torch", torch_lr, torch_swa)
SCHEDX = Impl("schedx", schedx_lr, schedx_swa)


def is_traced(scheduler) -> bool:
    """Whether schedx traced the scheduler's lambdas (or schedules) into engine programs."""
    entry = schedx_stepping._compiled_entry(scheduler)
    return entry is not None and entry.programs is not None


def other(impl: Impl) -> Impl:
    return SCHEDX if impl is TORCH else TORCH


# --------------------------------------------------------------------------------------------
# Twin optimizers
# --------------------------------------------------------------------------------------------

OPTIMIZER_KINDS = ("sgd", "adam")


def default_lrs(n: int) -> list[float]:
    """n different base LRs (some exact, some not representable)."""
    return [0.1 * (i + 1) / 3.0 if i % 3 else 0.05 + 0.01 * i for i in range(n)]


def group_dicts(kind: str, lrs) -> list[dict]:
    """Param-group dicts with the given LRs; groups also differ in momentum/betas/weight decay and
    some carry an extra user key.  One tiny parameter per group."""
    groups = []
    n = len(lrs)
    for i, lr in enumerate(lrs):
        lr = lr.clone() if isinstance(lr, torch.Tensor) else copy.copy(lr)
        g: dict[str, Any] = {"params": [torch.zeros(1)], "lr": lr}
        if kind == "sgd":
            g["momentum"] = 0.5 + 0.45 * i / max(1, n)
            g["weight_decay"] = 1e-4 * (i % 3)
        elif kind == "adam":
            g["betas"] = (0.8 + 0.15 * i / max(1, n), 0.999 - 0.001 * (i % 2))
            g["weight_decay"] = 1e-4 * (i % 2)
        if i % 4 == 0:
            g["name"] = f"block{i}"
        groups.append(g)
    return groups


def make_optimizer(kind: str = "sgd", lrs=None) -> torch.optim.Optimizer:
    lrs = default_lrs(3) if lrs is None else list(lrs)
    groups = group_dicts(kind, lrs)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=0.1)
    if kind == "adagrad":  # no momentum and no betas
        return torch.optim.Adagrad(groups, lr=0.1)
    raise ValueError(kind)


def make_twin_optimizers(kind: str = "sgd", lrs=None):
    """Two independent, identical optimizers (own parameters, equal param groups)."""
    return make_optimizer(kind, lrs), make_optimizer(kind, lrs)


def param_group_values(opt) -> list[dict]:
    """Everything in the param groups except the parameter tensors themselves (only their count)."""
    out = []
    for g in opt.param_groups:
        d = {k: v for k, v in g.items() if k != "params"}
        d["#params"] = len(g["params"])
        out.append(d)
    return out


def snapshot_groups(opt) -> list[dict]:
    return copy.deepcopy(param_group_values(opt))


# --------------------------------------------------------------------------------------------
# Identity of values
# --------------------------------------------------------------------------------------------


def _is_nan(x) -> bool:
    try:
        return bool(x != x)
    except Exception:
        return False


def value_diffs(a, b, path: str = "") -> list[str]:
    """Differences between two values, as readable lines; [] when identical.

    Floats must be ``==`` (NaN matches NaN).  Python int/float are interchangeable (1 == 1.0);
    any other type (tensors, numpy scalars, str, None, tuples...) must match exactly.  Tensors must
    have the same dtype, shape and device and equal elements."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return [f"{path}: torch={a!r} schedx={b!r} (tensor vs non-tensor)"]
        if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
            return [f"{path}: torch={a!r} schedx={b!r} (dtype/shape/device)"]
        an, bn = torch.isnan(a) if a.is_floating_point() else None, None
        if an is not None:
            bn = torch.isnan(b)
            if not torch.equal(an, bn) or not torch.equal(a[~an], b[~bn]):
                return [f"{path}: torch={a!r} schedx={b!r}"]
        elif not torch.equal(a, b):
            return [f"{path}: torch={a!r} schedx={b!r}"]
        return []
    if type(a) in (int, float) and type(b) in (int, float):
        if a == b or (_is_nan(a) and _is_nan(b)):
            return []
        return [f"{path}: torch={a!r} schedx={b!r} (diff {_ulps(a, b)})"]
    if type(a) is not type(b):
        return [f"{path}: torch={a!r} ({type(a).__name__}) schedx={b!r} ({type(b).__name__})"]
    if isinstance(a, dict):  # dict, Counter, OrderedDict
        out = []
        ka, kb = set(a), set(b)
        if ka != kb:
            out.append(
                f"{path}: keys differ: only torch={sorted(map(repr, ka - kb))} "
                f"only schedx={sorted(map(repr, kb - ka))}"
            )
        for k in a:
            if k in b:
                out += value_diffs(a[k], b[k], f"{path}[{k!r}]")
        return out
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length torch={len(a)} schedx={len(b)}: torch={a!r} schedx={b!r}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += value_diffs(x, y, f"{path}[{i}]")
        return out
    if callable(a) and not isinstance(a, (int, float, str)):
        return []  # functions cannot be compared; their results are
    try:
        same = a == b
        if not isinstance(same, bool):
            same = bool(same)
    except Exception:
        same = a is b
    if same or (_is_nan(a) and _is_nan(b)):
        return []
    return [f"{path}: torch={a!r} schedx={b!r}"]


def _ulps(a, b) -> str:
    try:
        a, b = float(a), float(b)
        if math.isfinite(a) and math.isfinite(b) and a != b:
            return f"{abs(a - b) / max(math.ulp(a), math.ulp(b)):.0f} ulp"
    except Exception:
        pass
    return "?"


def assert_same(a, b, what: str = "value", context: str = ""):
    diffs = value_diffs(a, b, what)
    if diffs:
        shown = "\n  ".join(diffs[:12])
        more = f"\n  ... and {len(diffs) - 12} more" if len(diffs) > 12 else ""
        raise AssertionError(f"{context}\n  {shown}{more}")


def assert_same_param_groups(opt_torch, opt_schedx, context: str = ""):
    """lr, momentum, betas, initial_lr, max_lr, ... of every group, identical."""
    assert_same(
        param_group_values(opt_torch), param_group_values(opt_schedx), "param_groups", context
    )


# --------------------------------------------------------------------------------------------
# Outcomes: return value, exception, warnings
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    value: Any = None
    exc: BaseException | None = None
    warnings: list = field(default_factory=list)

    def describe(self) -> str:
        if self.exc is not None:
            return f"raised {type(self.exc).__name__}: {self.exc}"
        return "returned normally"


def capture(fn: Callable[[], Any]) -> Outcome:
    """Run fn, recording every warning (no de-duplication) and any exception."""
    out = Outcome()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            out.value = fn()
        except Exception as e:  # noqa: BLE001 - we compare exceptions
            out.exc = e
    out.warnings = list(w)
    return out


def warning_summary(ws) -> list[tuple[str, str]]:
    return [(w.category.__name__, str(w.message)) for w in ws]


def assert_same_exception(e_torch, e_schedx, context: str = "", messages: bool = True):
    """The rule for exceptions:

    * none on one side  => none on the other;
    * same type and same message;
    * except where torch fails late with an arithmetic error (ZeroDivisionError, OverflowError):
      schedx may word it better, but must raise an instance of torch's type (DESIGN.md).
    """
    if e_torch is None and e_schedx is None:
        return
    if e_torch is None or e_schedx is None:
        raise AssertionError(
            f"{context}\n  torch: {_exc_str(e_torch)}\n  schedx: {_exc_str(e_schedx)}"
        )
    if isinstance(e_torch, ArithmeticError):
        assert isinstance(e_schedx, type(e_torch)), (
            f"{context}\n  torch raised {_exc_str(e_torch)}\n  schedx raised {_exc_str(e_schedx)},"
            f" which is not an instance of {type(e_torch).__name__}"
        )
        return
    same_message = str(e_schedx) == str(e_torch) or not messages
    assert type(e_schedx) is type(e_torch) and same_message, (
        f"{context}\n  torch raised  {_exc_str(e_torch)}\n  schedx raised {_exc_str(e_schedx)}"
    )


def _exc_str(e) -> str:
    return "nothing" if e is None else f"{type(e).__name__}({str(e)!r})"


def assert_same_outcome(o_torch: Outcome, o_schedx: Outcome, context: str = "", value=True,
                        messages: bool = True):
    assert_same_exception(o_torch.exc, o_schedx.exc, context, messages)
    wt, ws = warning_summary(o_torch.warnings), warning_summary(o_schedx.warnings)
    assert wt == ws, f"{context}\n  warnings differ:\n  torch:  {wt}\n  schedx: {ws}"
    if value and o_torch.exc is None:
        assert_same(o_torch.value, o_schedx.value, "return value", context)


# --------------------------------------------------------------------------------------------
# User functions (lr_lambda, scale_fn) as plain data
# --------------------------------------------------------------------------------------------


class ExpFactor:
    """A callable object (its __dict__ goes into state_dict, unlike a lambda's)."""

    def __init__(self, a):
        self.a = a

    def __call__(self, x):
        return self.a**x


class ConstFactor:
    def __init__(self, a):
        self.a = a

    def __call__(self, x):
        return self.a


class InverseScale:
    def __init__(self, a):
        self.a = a

    def __call__(self, x):
        return 1.0 / (1.0 + self.a * x)


@dataclass(frozen=True)
class Fn:
    """A user function described by data, so that each implementation gets its own equal copy.

    kinds -- LambdaLR: exp, step, warmup, int, obj_exp;  MultiplicativeLR: const, every, obj_const;
    CyclicLR scale_fn: inverse, exp, obj_inverse."""

    kind: str
    a: float = 0.9
    b: int = 2

    def make(self):
        a, b = self.a, self.b
        k = self.kind
        if k == "exp":
            return lambda e: a**e
        if k == "step":
            return lambda e: a ** (e // b)
        if k == "warmup":
            return lambda e: min(1.0, (e + 1) / b)
        if k == "int":
            return lambda e: int(e) // b + 1
        if k == "const":
            return lambda e: a
        if k == "every":
            return lambda e: a if e % b == 0 else 1.0
        if k == "inverse":
            return lambda x: 1.0 / (1.0 + a * x)
        if k == "obj_exp":
            return ExpFactor(a)
        if k == "obj_const":
            return ConstFactor(a)
        if k == "obj_inverse":
            return InverseScale(a)
        raise ValueError(k)

    def __repr__(self):
        return f"Fn.{self.kind}(a={self.a!r}, b={self.b!r})"


def _materialize(v):
    if isinstance(v, Fn):
        return v.make()
    if isinstance(v, list):
        return [_materialize(x) for x in v]
    return v


# --------------------------------------------------------------------------------------------
# Scheduler specs
# --------------------------------------------------------------------------------------------


class Sched:
    """``Sched("StepLR", step_size=3)`` -> builds ``impl.StepLR(optimizer, step_size=3)``.

    Composites: ``Sched("SequentialLR", children=[...], milestones=[5])`` and
    ``Sched("ChainedScheduler", children=[...], pass_optimizer=True)``."""

    def __init__(self, name, children=(), **kwargs):
        self.name = name
        self.children = list(children)
        self.kwargs = kwargs

    def build(self, impl: Impl, optimizer, **overrides):
        kw = {k: _materialize(v) for k, v in self.kwargs.items()}
        kw.update(overrides)
        cls = getattr(impl, self.name)
        if self.name == "SequentialLR":
            child_kw = {"last_epoch": kw["last_epoch"]} if "last_epoch" in kw else {}
            schedulers = [c.build(impl, optimizer, **child_kw) for c in self.children]
            return cls(optimizer, schedulers=schedulers, **kw)
        if self.name == "ChainedScheduler":
            pass_opt = kw.pop("pass_optimizer", False)
            schedulers = [c.build(impl, optimizer) for c in self.children]
            return cls(schedulers, optimizer=optimizer if pass_opt else None)
        return cls(optimizer, **kw)

    @property
    def takes_metric(self) -> bool:
        return self.name == "ReduceLROnPlateau"

    @property
    def accepts_epoch(self) -> bool:
        return self.name in EPOCH_NAMES

    def __repr__(self):
        parts = []
        if self.children:
            parts.append("[" + ", ".join(map(repr, self.children)) + "]")
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


class Custom:
    """A spec built by any function ``factory(impl, optimizer, **overrides)``: user subclasses,
    mixed torch/schedx setups, deliberately invalid calls."""

    def __init__(self, label, factory, takes_metric=False, accepts_epoch=True):
        self.label, self.factory = label, factory
        self.takes_metric, self.accepts_epoch = takes_metric, accepts_epoch
        self.name = label

    def build(self, impl, optimizer, **overrides):
        return self.factory(impl, optimizer, **overrides)

    def __repr__(self):
        return self.label


class SwaLoop:
    """The usual SWA pattern: a regular scheduler, then SWALR from epoch ``swa_start`` on.

        for epoch in range(...):
            ...
            if epoch > swa_start: swa_scheduler.step()
            else:                 scheduler.step()
    """

    def __init__(self, scheduler, swa_scheduler, swa_start):
        self.scheduler, self.swa_scheduler, self.swa_start = scheduler, swa_scheduler, swa_start
        self.epoch = 0

    def step(self):
        active = self.swa_scheduler if self.epoch > self.swa_start else self.scheduler
        self.epoch += 1
        active.step()

    def get_last_lr(self):
        active = self.swa_scheduler if self.epoch > self.swa_start else self.scheduler
        return active.get_last_lr()

    def state_dict(self):
        return {
            "scheduler": self.scheduler.state_dict(),
            "swa_scheduler": self.swa_scheduler.state_dict(),
            "epoch": self.epoch,
        }

    def load_state_dict(self, sd):
        self.scheduler.load_state_dict(sd["scheduler"])
        self.swa_scheduler.load_state_dict(sd["swa_scheduler"])
        self.epoch = sd["epoch"]


@dataclass
class SwaPattern:
    """Spec of the SWA pattern: ``SwaPattern(Sched("CosineAnnealingLR", T_max=9),
    Sched("SWALR", swa_lr=0.05), swa_start=5)``."""

    scheduler: Sched
    swa: Sched
    swa_start: int
    name = "SWA pattern"
    takes_metric = False
    accepts_epoch = False

    def build(self, impl, optimizer):
        s = self.scheduler.build(impl, optimizer)
        w = self.swa.build(impl, optimizer)
        return SwaLoop(s, w, self.swa_start)

    def __repr__(self):
        return f"SwaPattern({self.scheduler!r}, {self.swa!r}, swa_start={self.swa_start})"


# One representative, valid configuration per class (tests add their own variants).
CANONICAL: dict[str, Sched] = {
    "LambdaLR": Sched("LambdaLR", lr_lambda=Fn("exp", 0.93)),
    "MultiplicativeLR": Sched("MultiplicativeLR", lr_lambda=Fn("const", 0.9)),
    "StepLR": Sched("StepLR", step_size=3, gamma=0.3),
    "MultiStepLR": Sched("MultiStepLR", milestones=[2, 5, 5, 9], gamma=0.7),
    "ConstantLR": Sched("ConstantLR", factor=0.3, total_iters=4),
    "LinearLR": Sched("LinearLR", start_factor=0.2, end_factor=0.9, total_iters=7),
    "ExponentialLR": Sched("ExponentialLR", gamma=0.87),
    "PolynomialLR": Sched("PolynomialLR", total_iters=9, power=1.7),
    "CosineAnnealingLR": Sched("CosineAnnealingLR", T_max=7, eta_min=0.001),
    "CyclicLR": Sched(
        "CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=3, step_size_down=4, mode="triangular2"
    ),
    "OneCycleLR": Sched("OneCycleLR", max_lr=0.3, total_steps=17, pct_start=0.35),
    "CosineAnnealingWarmRestarts": Sched(
        "CosineAnnealingWarmRestarts", T_0=3, T_mult=2, eta_min=0.0005
    ),
    "SequentialLR": Sched(
        "SequentialLR",
        children=[
            Sched("LinearLR", start_factor=0.1, total_iters=3),
            Sched("CosineAnnealingLR", T_max=8, eta_min=0.001),
        ],
        milestones=[3],
    ),
    "ChainedScheduler": Sched(
        "ChainedScheduler",
        children=[Sched("ExponentialLR", gamma=0.9), Sched("CosineAnnealingLR", T_max=6)],
    ),
    "ReduceLROnPlateau": Sched(
        "ReduceLROnPlateau", factor=0.5, patience=1, cooldown=1, threshold=0.01
    ),
    "SWALR": Sched("SWALR", swa_lr=0.05, anneal_epochs=4, anneal_strategy="cos"),
}
assert set(CANONICAL) == set(ALL_NAMES)

# A metric sequence with plateaus, improvements and regressions (for ReduceLROnPlateau).
METRICS = [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 1.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49]


def metric_at(i: int) -> float:
    return METRICS[i % len(METRICS)]


# --------------------------------------------------------------------------------------------
# Twins: lock-step driving of a torch side and a schedx side
# --------------------------------------------------------------------------------------------


def save_and_load_weights_only(obj):
    """torch.save, then torch.load(weights_only=True) -- the default of Lightning/HF/accelerate."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


class Side:
    """One optimizer and the scheduler (or SWA loop) driving it."""

    def __init__(self, label: str, impl: Impl, opt):
        self.label, self.impl, self.opt = label, impl, opt
        self.sched = None
        self.steps = 0  # step() calls issued, for metric_at

    def __repr__(self):
        return f"{self.label} twin running {self.impl.name}"


class Twins:
    """Two identical optimizers; the first starts with torch's scheduler, the second with schedx's.

    Every action runs on both and is compared: exception (type and message), warnings, return
    value, then the whole observable state -- all param-group values, ``get_last_lr()`` and
    ``state_dict()``.  ``handover()`` swaps each side to the other implementation through the
    state dict, so after it the first twin runs schedx and the second runs torch."""

    def __init__(self, spec, kind: str = "sgd", lrs=None, n_groups: int | None = None, *,
                 build: bool = True, impl_b: Impl = None, messages: bool = True):
        """``impl_b`` (default SCHEDX) is what the second twin starts with; the first twin always
        starts with torch.  ``messages=False`` compares exception types only."""
        if lrs is None:
            lrs = default_lrs(3 if n_groups is None else n_groups)
        self.spec, self.kind, self.messages = spec, kind, messages
        opt_t, opt_s = make_twin_optimizers(kind, lrs)
        self.a = Side("torch", TORCH, opt_t)
        self.b = Side("schedx", SCHEDX if impl_b is None else impl_b, opt_s)
        self.history: list[str] = []
        self.built = False
        if build:
            self.build()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def sides(self):
        return (self.a, self.b)

    def context(self, what: str) -> str:
        return (
            f"{self.spec!r} on {self.kind} with {len(self.a.opt.param_groups)} groups;\n"
            f"  after: {what}  [{self.a!r} | {self.b!r}]\n"
            f"  history: {'; '.join(self.history[-12:])}"
        )

    def both(self, fn: Callable[[Side], Any], what: str, *, compare_value: bool = True,
             check: bool = True):
        """Run fn on each side; assert identical outcomes and (unless check=False) identical
        state; return both outcomes."""
        self.history.append(what)
        oa = capture(lambda: fn(self.a))
        ob = capture(lambda: fn(self.b))
        ctx = self.context(what)
        assert_same_outcome(oa, ob, ctx, value=compare_value, messages=self.messages)
        if check:
            self.check(ctx)
        return oa, ob

    def check(self, ctx: str = ""):
        assert_same_param_groups(self.a.opt, self.b.opt, ctx)
        if self.built:
            la = capture(self.a.sched.get_last_lr)
            lb = capture(self.b.sched.get_last_lr)
            assert_same_outcome(la, lb, ctx + "\n  (get_last_lr())", messages=self.messages)
            sa = capture(self.a.sched.state_dict)
            sb = capture(self.b.sched.state_dict)
            assert_same_exception(sa.exc, sb.exc, ctx + "\n  (state_dict())", self.messages)
            if sa.exc is None:
                assert_same(sa.value, sb.value, "state_dict", ctx)

    # -- actions ----------------------------------------------------------------------------
    def build(self, **overrides):
        """Construct (or re-construct, e.g. with ``last_epoch=``) the scheduler on both sides."""
        def _build(side):
            side.sched = self.spec.build(side.impl, side.opt, **overrides)

        oa, ob = self.both(_build, f"construct {self.spec!r}" + (f" {overrides}" if overrides else ""))
        self.built = self.built or oa.exc is None
        return oa, ob

    def step(self, times: int = 1, metric=None):
        """``scheduler.step()`` (``step(metric)`` for ReduceLROnPlateau; metric defaults to the
        METRICS sequence)."""
        last = None
        for _ in range(times):
            def _step(side, metric=metric):
                if self.spec.takes_metric:
                    m = metric_at(side.steps) if metric is None else metric
                    side.steps += 1
                    return side.sched.step(m)
                side.steps += 1
                return side.sched.step()

            last = self.both(_step, f"step({'' if metric is None else metric})")
        return last

    def step_epoch(self, epoch, metric=None):
        """Deprecated ``step(epoch)`` (``step(metric, epoch)`` for ReduceLROnPlateau)."""
        def _step(side):
            if self.spec.takes_metric:
                m = metric_at(side.steps) if metric is None else metric
                side.steps += 1
                return side.sched.step(m, epoch)
            side.steps += 1
            return side.sched.step(epoch)

        return self.both(_step, f"step(epoch={epoch!r})")

    def optimizer_step(self):
        return self.both(lambda s: s.opt.step(), "optimizer.step()")

    def edit_lr(self, group: int, value):
        def _edit(side):
            side.opt.param_groups[group % len(side.opt.param_groups)]["lr"] = copy.copy(value)

        return self.both(_edit, f"param_groups[{group}]['lr'] = {value!r}")

    def scale_lr(self, group: int, factor: float):
        def _edit(side):
            g = side.opt.param_groups[group % len(side.opt.param_groups)]
            g["lr"] = g["lr"] * factor

        return self.both(_edit, f"param_groups[{group}]['lr'] *= {factor!r}")

    def add_param_group(self, lr):
        return self.both(
            lambda s: s.opt.add_param_group({"params": [torch.zeros(1)], "lr": lr}),
            f"optimizer.add_param_group(lr={lr!r})",
        )

    def get_lr(self):
        """``get_lr()`` outside ``step()`` (warns; may have side effects, as in torch)."""
        return self.both(lambda s: s.sched.get_lr(), "get_lr()")

    def reload_optimizer(self):
        """``optimizer.load_state_dict(optimizer.state_dict())``: replaces every param-group dict."""
        return self.both(
            lambda s: s.opt.load_state_dict(copy.deepcopy(s.opt.state_dict())),
            "optimizer.load_state_dict(optimizer.state_dict())",
        )

    def handover(self, only_b: bool = False, serialize: bool = False, to: Impl | None = None):
        """Mid-run hand-over through the state dict: each side builds a fresh scheduler of the
        *other* implementation (or ``to``) on its own optimizer, restores the optimizer's param
        groups (construction rewrites them), then loads the old scheduler's state dict.

        ``only_b``: the first twin keeps running uninterrupted.  ``serialize``: the state dict
        goes through ``torch.save`` / ``torch.load(weights_only=True)`` on the way."""

        def _handover(side):
            if only_b and side is self.a:
                return
            sd = side.sched.state_dict()
            if serialize:
                sd = save_and_load_weights_only(sd)
            saved = copy.deepcopy(side.opt.state_dict())
            new_impl = to or other(side.impl)
            try:
                fresh = self.spec.build(new_impl, side.opt)
            finally:
                side.opt.load_state_dict(saved)
            fresh.load_state_dict(sd)
            side.sched, side.impl = fresh, new_impl

        what = "state-dict hand-over" + (" (through torch.save/load)" if serialize else "")
        return self.both(_handover, what)

    def do(self, fn: Callable[[Side], Any], what: str, compare_value: bool = True):
        """Any other action, e.g. ``tw.do(lambda s: s.sched._get_closed_form_lr(), "...")``."""
        return self.both(fn, what, compare_value=compare_value)
