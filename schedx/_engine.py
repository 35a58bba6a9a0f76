"""The bridge between the scheduler classes and the compiled engine, schedx._C.

`Kind` mirrors the C++ enum of csrc/kinds.h (a test checks that they agree). The engine functions take
torch's own scheduler attributes as they are (the `base_lrs` list, the param-group dicts), so nothing
goes stale when a state dict is loaded or a user edits a group between steps.
"""
from __future__ import annotations

import enum

try:
    from . import _C
except ImportError as error:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "schedx's compiled engine (schedx._C) could not be loaded: "
        f"{error}. Build it with `pip install --no-build-isolation -e .` "
        "(or `make test`, which sets everything up) in the schedx checkout."
    ) from error


class Kind(enum.IntEnum):
    """Schedulers whose step is a StepPlan of csrc/formulas.h; values match csrc/kinds.h."""

    StepLR = 0
    MultiStepLR = 1
    ConstantLR = 2
    LinearLR = 3
    ExponentialLR = 4
    PolynomialLR = 5
    CosineAnnealingLR = 6
    CosineAnnealingWarmRestarts = 7


# CyclicLR's built-in modes, as csrc/formulas.h's CyclicMode numbers them; -1 for anything else.
CYCLIC_MODES = {"triangular": 0, "triangular2": 1, "exp_range": 2}

recursive_step = _C.recursive_step
closed_form_step = _C.closed_form_step
chained_step = _C.chained_step
# The `step` of the classes whose plain steps the engine runs whole (instancemethods; as class
# attributes they read as the builtins in ENGINE_STEPS).
step_method = _C.step_method
chain_step_method = _C.chain_step_method
plateau_step_method = _C.plateau_step_method
ENGINE_STEPS = (step_method.__func__, chain_step_method.__func__, plateau_step_method.__func__)
register_plain_class = _C.register_plain_class
scale_by_factors = _C.scale_by_factors
cyclic_step = _C.cyclic_step
one_cycle_step = _C.one_cycle_step
swa_step = _C.swa_step
plateau_step = _C.plateau_step
plateau_criterion = _C.plateau_criterion
collect_lrs = _C.collect_lrs
schedule_step = _C.schedule_step
