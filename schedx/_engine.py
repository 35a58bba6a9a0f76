"""The bridge between the scheduler classes and the compiled engine, schedx._C.

The numbers shared with the C++ (`Kind`, ...) are read from it (`CONSTANTS`). The engine functions take
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


# Every number shared with the engine (enumerations, program flags and counters, limits), by table and
# name, as csrc declares it: {"Kind": {"StepLR": 0, ...}, "Family": {...}, "Limit": {...}, ...}.
CONSTANTS: dict[str, dict[str, int]] = _C.constants()

# The engine's families (csrc/rules/kinds.h; one csrc/families/ file each), and the schedulers whose
# step is a StepPlan of csrc/rules/formulas.h, the Plan family's kinds.
Family = enum.IntEnum("Family", CONSTANTS["Family"])
Kind = enum.IntEnum("Kind", CONSTANTS["Kind"])

# CyclicLR's built-in modes, by torch's names, as csrc/formulas.h's CyclicMode numbers them.
CYCLIC_MODES = {
    mode: CONSTANTS["CyclicMode"][name]
    for mode, name in (("triangular", "Triangular"), ("triangular2", "Triangular2"), ("exp_range", "ExpRange"))
}

plan_get_lr = _C.plan_get_lr
plan_closed_form_lr = _C.plan_closed_form_lr
chain_get_lr = _C.chain_get_lr
# The `step` of the classes whose plain steps the engine runs whole (instancemethods; as class
# attributes they read as the builtins in ENGINE_STEPS).
step_method = _C.step_method
chain_step_method = _C.chain_step_method
plateau_step_method = _C.plateau_step_method
ENGINE_STEPS = (step_method.__func__, chain_step_method.__func__, plateau_step_method.__func__)
register_plain_class = _C.register_plain_class
scale_by_factors = _C.scale_by_factors
cyclic_get_lr = _C.cyclic_get_lr
cyclic_builtin_scale = _C.cyclic_builtin_scale
same_callables = _C.same_callables
one_cycle_get_lr = _C.one_cycle_get_lr
swa_get_lr = _C.swa_get_lr
plateau_get_lr = _C.plateau_get_lr
plateau_criterion = _C.plateau_criterion
collect_lrs = _C.collect_lrs
schedule_step = _C.schedule_step
