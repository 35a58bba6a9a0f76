"""Tensor-LR mode: schedulers whose param groups hold their LRs as tensors.

When every group's ``lr`` is a one-element float32 / float64 tensor on one device, a scheduler (or a
SequentialLR / ChainedScheduler of them) is turned into a *program* (csrc/program.h) over arrays on
that device: the LR tensors (through a table of their addresses), a double shadow of every LR, the
per-group hyperparameters, and the step counters. ``step()`` is then one engine call: a loop in the CPU
extension for CPU tensors, one kernel launch for CUDA tensors, with no host-device synchronisation.
Because nothing is passed per step, the launch can be captured in a CUDA graph; each replay advances
the schedule.

Every scheduler class's Python step begins with `if self._in_tensor_mode and tensor_step(...)`: a
class attribute, False except on the tensor-mode subclasses, so the float path pays one lookup. (The
engine's own step, which the registered classes use, never runs a tensor-mode scheduler: their
tensor-mode subclass takes their Python step as its `step`.)

While a scheduler is in tensor mode its counters and state live in the program. Its class is switched
to a subclass (``tensor_mode_class``) whose ``last_epoch``, ``_step_count``, ``_last_lr`` and
schedule state are properties reading the program (a synchronisation, only when read). Assigning any
attribute (a counter, a hyperparameter), ``step(epoch)``, ``load_state_dict`` or a change of the
optimizer's param-group list leaves tensor mode (the state is written back to the instance) and the
next step builds a new program. In-place edits of the scheduler's lists (``base_lrs[0] = ...``) are
not seen by a running program.

The LR tensors are bound when the program is built: replacing a group's ``lr`` tensor object (not its
value) goes unnoticed until the param-group list changes, as it would for a captured CUDA graph.
"""
from __future__ import annotations

import dataclasses
import itertools
import weakref
from typing import Any

import torch

from . import _build, _engine, _torch_era

_C = _engine._C
try:
    from . import _cuda
except ImportError:
    _cuda = None

# csrc/program.h's numbers, as the extension exports them.
_FAMILY, _COMPOSITION, _FLAG, _LIMIT, _COUNTER, _STATUS, _RUN_MODE = (
    _engine.CONSTANTS[table]
    for table in ("Family", "Composition", "StageFlag", "Limit", "Counter", "Status", "RunMode")
)
FAMILY_PLAN, FAMILY_ONE_CYCLE, FAMILY_CYCLIC, FAMILY_PLATEAU, FAMILY_SCHEDULE = (
    _FAMILY[name] for name in ("Plan", "OneCycle", "Cyclic", "Plateau", "Schedule")
)
SINGLE, CHAINED, SEQUENTIAL = (_COMPOSITION[name] for name in ("Single", "Chained", "Sequential"))
CYCLE_MOMENTUM, ANNEAL_COS, SCALE_BY_CYCLE, HAS_CLOSED_FORM, NO_STEP_COUNT, SCALES_LR = (
    _FLAG[name]
    for name in ("CYCLE_MOMENTUM", "ANNEAL_COS", "SCALE_BY_CYCLE", "HAS_CLOSED_FORM", "NO_STEP_COUNT", "SCALES_LR")
)
MAX_STAGES, MAX_MILESTONES, MAX_VALUE_ROWS, STATE_SIZE, MAX_SCHEDULES = (
    _LIMIT[name] for name in ("MAX_STAGES", "MAX_MILESTONES", "MAX_VALUE_ROWS", "STATE_SIZE", "MAX_SCHEDULES")
)
COUNTER_LAST_EPOCH, COUNTER_STATUS, COUNTER_STATUS_EPOCH, COUNTERS = (
    _COUNTER[name] for name in ("LAST_EPOCH", "STATUS", "STATUS_EPOCH", "SIZE")
)
STATUS_ARITHMETIC, STATUS_ONE_CYCLE_END, STATUS_SCHEDULE = (
    _STATUS[name] for name in ("ARITHMETIC", "ONE_CYCLE_END", "SCHEDULE")
)
ADVANCE, AT_CURRENT, AT_CURRENT_CLOSED_FORM = (
    _RUN_MODE[name] for name in ("Advance", "AtCurrent", "AtCurrentClosedForm")
)

# The double shadows of each optimizer's LR tensors, kept across programs (one program ends and another
# begins when a composite takes over its children, or after a step(epoch)), so that float32 LRs keep
# the precision of the rules computed in double. A program reads a shadow only while its tensor still
# holds it.
_SHADOWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

LR_DTYPES = (torch.float32, torch.float64)

# What describing a scheduler with malformed attributes (a bad state dict) raises: then it has no
# stage, and torch's own code runs and raises torch's error.
STAGE_ERRORS = (AttributeError, IndexError, KeyError, TypeError, ValueError)

# The attributes a program holds while a scheduler is in tensor mode (besides its state_names).
COUNTER_ATTRIBUTES = ("last_epoch", "_step_count", "_last_lr")


@dataclasses.dataclass
class StageSpec:
    """One scheduler as a stage of a program (csrc/program.h's Stage), from the scheduler's attributes."""

    family: int
    kind: int = 0
    flags: int = 0
    params: tuple[float, ...] = ()
    milestones: tuple[float, ...] = ()
    rows: tuple[list[Any], ...] = ()  # per-group hyperparameters, one list per row
    state_names: tuple[str, ...] = ()  # attributes the program updates (program.h's state)
    uses_momentum: bool = False
    schedules: tuple = ()  # compiled schedules (schedx/schedules/) of a Schedule stage
    # Whether the stage still describes its scheduler, checked before each step (given the scheduler):
    # a Schedule stage's traced callables and their guards. None: always.
    still_valid: Any = None


class ScheduleArithmeticError(ZeroDivisionError, OverflowError):
    """A program's step failed where torch's Python arithmetic raises ZeroDivisionError or
    OverflowError (the engine cannot tell which): an instance of both, so either handler catches it."""


def real(value) -> float | None:
    """A Python int or float (not bool, not a tensor) as a float; None for anything else."""
    if type(value) in (int, float):
        return float(value)
    return None


def reals(values) -> tuple[float, ...] | None:
    out = tuple(real(v) for v in values)
    return None if any(v is None for v in out) else out


def _writable_scalar(value, device) -> bool:
    """Whether `value` is a one-element float32 / float64 tensor on `device` that needs no gradient:
    something a program can read and write in place."""
    return (
        isinstance(value, torch.Tensor)
        and value.dtype in LR_DTYPES
        and value.numel() == 1
        and value.device == device
        and not value.requires_grad
    )


def _distinct(tensors) -> bool:
    """No two groups share one tensor's memory: a program updates each group's value on its own,
    where torch would update a shared one once per group."""
    return len({t.data_ptr() for t in tensors}) == len(tensors)


def _group_tensors(optimizer, read, device) -> list[torch.Tensor] | None:
    """`read(group)` for every group when each is a writable scalar tensor on `device` and no two share
    memory; else None."""
    tensors = [read(group) for group in optimizer.param_groups]
    if not tensors or not all(_writable_scalar(t, device) for t in tensors):
        return None
    return tensors if _distinct(tensors) else None


def lr_tensors(optimizer) -> list[torch.Tensor] | None:
    """Every group's LR tensor when all are one-element float32 / float64 tensors on one device, that
    need no gradient; else None (the LRs take torch's own path)."""
    first = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
    if not isinstance(first, torch.Tensor):
        return None
    if first.device.type == "cuda" and not _build.cuda_step_available(first.device):
        return None
    return _group_tensors(optimizer, lambda group: group.get("lr"), first.device)


def momentum_tensors(optimizer, use_beta1: bool, device) -> list[torch.Tensor] | None:
    """The tensors a cycling momentum is written into (``momentum`` or ``betas[0]``), or None."""
    if use_beta1:
        return _group_tensors(optimizer, lambda group: group.get("betas", (None,))[0], device)
    return _group_tensors(optimizer, lambda group: group.get("momentum"), device)


def _span(t: torch.Tensor) -> tuple[int, int]:
    """The addresses `t`'s elements may occupy: its own bytes when contiguous, else its storage's."""
    if t.is_contiguous():
        return t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes()


def _tensors_in(values):
    """The tensors among `values`, and inside the lists and tuples among them (one level deep)."""
    for v in values:
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from (x for x in v if isinstance(x, torch.Tensor))


def _overlaps(t: torch.Tensor, tensors) -> bool:
    """Whether writing the one-element tensor `t` changes one of `tensors`."""
    address = t.data_ptr()
    return any(start <= address < end for start, end in map(_span, tensors))


def _rows_read_written(specs, written) -> bool:
    """Whether a stage's per-group values (copied into the program once) include a tensor the program
    writes: torch reads those at every step, after the writes."""
    rows = list(_tensors_in(v for spec in specs for row in spec.rows for v in row))
    return any(_overlaps(t, rows) for t in written)


def _own_momenta(optimizer, members, use_beta1: bool, momenta) -> list[torch.Tensor]:
    """The momentum tensors a program may fill in place: each group's own, unless something else holds
    it too (torch's constructors leave `max_momentum`, the scheduler's `max_momentums` and the group's
    momentum one tensor). Torch replaces the group's momentum (or betas) at every step and leaves the
    others be; a shared one is replaced here by a copy once, which the program then fills."""
    slot = "betas" if use_beta1 else "momentum"
    held = [v for group in optimizer.param_groups for key, v in group.items() if key not in ("params", slot)]
    held += [group[slot][1:] for group in optimizer.param_groups if use_beta1]
    held += list(optimizer.defaults.values())
    held += [v for m in members for key, v in m.__dict__.items() if key != "optimizer"]
    elsewhere = list(_tensors_in(held))
    own = []
    for group, tensor in zip(optimizer.param_groups, momenta):
        if _overlaps(tensor, elsewhere):
            tensor = tensor.clone()
            if use_beta1:
                group["betas"] = (tensor, *group["betas"][1:])
            else:
                group["momentum"] = tensor
        own.append(tensor)
    return own


def _double_row(values, device) -> torch.Tensor:
    """Per-group values (Python numbers or one-element tensors) as one float64 tensor on `device`,
    without a synchronisation per tensor."""
    values = list(values)
    if all(isinstance(v, torch.Tensor) for v in values):
        return torch.stack([v.detach().reshape(()).to(device=device, dtype=torch.float64) for v in values])
    return torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)


def _address_table(tensors, device) -> torch.Tensor:
    return torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64, device=device)


def _is_f64_table(tensors, device) -> torch.Tensor:
    return torch.tensor([t.dtype == torch.float64 for t in tensors], dtype=torch.int8, device=device)


class Program:
    """The arrays and compiled program of one scheduler, or of a composite and its children, in tensor
    mode. ``members[k]`` is the scheduler of stage ``k``; ``owner`` is the scheduler whose step() runs
    the program (the composite, or the single member).

    The schedulers hold their program (``_tensor_program``), so the program holds them only weakly:
    deleting a scheduler frees it, its optimizer and the program by reference counting, as torch's
    schedulers are freed. A member that is gone reads as None."""

    def __init__(self, owner, members, specs, composition, seq_milestones, lrs, momenta):
        self._owner = weakref.ref(owner)
        self._members = [weakref.ref(m) for m in members]
        self.owner_is_member = owner in members
        self.specs = specs
        self.groups = owner.optimizer.param_groups
        self.n_groups = len(lrs)
        self.device = lrs[0].device
        self.lrs = lrs
        self.momenta = momenta
        device = self.device
        self.lr_table = _address_table(lrs, device)
        self.lr_is_f64 = _is_f64_table(lrs, device)
        self.shadow = self._initial_shadow(owner.optimizer, lrs)
        self.momentum_table = _address_table(momenta, device) if momenta else None
        self.momentum_is_f64 = _is_f64_table(momenta, device) if momenta else None
        self.counters = torch.zeros(COUNTERS, dtype=torch.int64, device=device)
        if not self.owner_is_member:
            self.counters[COUNTER_LAST_EPOCH] = owner.__dict__.get("last_epoch", 0)
        self.stage_counters = torch.tensor(
            [[m.__dict__["last_epoch"], m.__dict__.get("_step_count", 0)] for m in members],
            dtype=torch.int64,
            device=device,
        )
        self.has_step_count = ["_step_count" in m.__dict__ for m in members]
        self.reads_metric = any(spec.family == FAMILY_PLATEAU for spec in specs)
        self.stage_checks = [(k, spec.still_valid) for k, spec in enumerate(specs) if spec.still_valid]
        self.stage_state = torch.tensor(
            [self._initial_state(m, spec) for m, spec in zip(members, specs)],
            dtype=torch.float64,
            device=device,
        )
        self.stage_values = torch.zeros(
            len(members), MAX_VALUE_ROWS, self.n_groups, dtype=torch.float64, device=device
        )
        for k, spec in enumerate(specs):
            for r, row in enumerate(spec.rows):
                self.stage_values[k, r] = _double_row(row, device)
        self.stage_last_lr = torch.stack([self._initial_last_lr(m) for m in members])
        self.schedule_arrays = [[self._schedule_arrays(p, device) for p in spec.schedules] for spec in specs]
        self.metric = torch.zeros((), dtype=torch.float64, device=device)
        self.is_cuda = device.type == "cuda"
        # Where a CUDA step that fails leaves its status for the host (program.h's status_host).
        self.status_host = torch.zeros(2, dtype=torch.int64, pin_memory=True) if self.is_cuda else None
        self.state_types = [
            {name: type(m.__dict__[name]) for name in spec.state_names} for m, spec in zip(members, specs)
        ]
        self.capsule = _C.make_program(
            self.n_groups,
            composition,
            tuple(seq_milestones),
            self.counters.data_ptr(),
            self.lr_table.data_ptr(),
            self.lr_is_f64.data_ptr(),
            self.shadow.data_ptr(),
            self.momentum_table.data_ptr() if momenta else 0,
            self.momentum_is_f64.data_ptr() if momenta else 0,
            tuple(self._stage_tuple(k, spec) for k, spec in enumerate(specs)),
            self.status_host.data_ptr() if self.is_cuda else 0,
        )
        self.op_id = next(_PROGRAM_IDS)
        _LIVE_PROGRAMS[self.op_id] = self

    @property
    def owner(self):
        return self._owner()

    @property
    def members(self) -> list:
        return [ref() for ref in self._members]

    def schedulers(self) -> list:
        """The owner and the members still alive, each once."""
        alive = (s for s in (self.owner, *self.members) if s is not None)
        return list({id(s): s for s in alive}.values())

    @staticmethod
    def _initial_shadow(optimizer, lrs) -> torch.Tensor:
        previous = _SHADOWS.get(optimizer)
        if previous is not None and len(previous[0]) == len(lrs) and all(
            a is b for a, b in zip(previous[0], lrs)
        ):
            shadow = previous[1].clone()
        else:
            shadow = _double_row(lrs, lrs[0].device)
        _SHADOWS[optimizer] = (lrs, shadow)
        return shadow

    def _initial_last_lr(self, member) -> torch.Tensor:
        last_lr = member.__dict__.get("_last_lr")
        if isinstance(last_lr, list) and len(last_lr) == self.n_groups:
            return _double_row(last_lr, self.device)
        return self.shadow.clone()

    @staticmethod
    def _initial_state(member, spec: StageSpec) -> list[float]:
        values = [float(member.__dict__[name]) for name in spec.state_names]
        return values + [0.0] * (STATE_SIZE - len(values))

    @staticmethod
    def _schedule_arrays(program, device) -> tuple[torch.Tensor, torch.Tensor]:
        """A compiled schedule's code (int32 pairs) and constants (float64) on the program's device."""
        code, consts, _ = program
        return (
            torch.frombuffer(bytearray(code), dtype=torch.int32).to(device),
            torch.frombuffer(bytearray(consts), dtype=torch.float64).to(device),
        )

    def _stage_tuple(self, k: int, spec: StageSpec) -> tuple:
        return (
            spec.family,
            spec.kind,
            spec.flags,
            spec.params,
            spec.milestones,
            self.stage_counters[k].data_ptr(),
            self.stage_state[k].data_ptr(),
            self.stage_values[k].data_ptr(),
            self.stage_last_lr[k].data_ptr(),
            tuple(
                (code.data_ptr(), code.numel() // 2, consts.data_ptr(), consts.numel())
                for code, consts in self.schedule_arrays[k]
            ),
        )

    def still_bound(self) -> bool:
        """Whether the program still describes its schedulers: the same param-group list, and every
        stage's own check (a traced lambda changed since its trace is torch's to call). The stage
        checks are not part of a torch.compile graph, as they are not part of a captured CUDA graph:
        there the traced schedule runs as traced."""
        groups = self.owner.optimizer.param_groups
        return (
            groups is self.groups
            and len(groups) == self.n_groups
            and (
                not self.stage_checks
                or torch.compiler.is_compiling()
                or all(still_valid(self._members[k]()) for k, still_valid in self.stage_checks)
            )
        )

    def metric_tensor(self, metrics) -> torch.Tensor:
        """ReduceLROnPlateau's metric as a one-element tensor on the program's device: the caller's own
        tensor when it is one already (no copy, no sync), else `float(metrics)`, as torch reads it (and
        with torch's error for a metric that is not a number), in the program's buffer."""
        if (
            isinstance(metrics, torch.Tensor)
            and metrics.numel() == 1
            and metrics.device == self.device
            and metrics.dtype in LR_DTYPES
        ):
            return metrics
        self.metric.fill_(float(metrics))
        return self.metric

    def step(self, metric: torch.Tensor | None = None) -> bool:
        """A plain step: the engine call, or, inside torch.compile, the schedx::step_program custom op
        (one node of the graph, not a graph break). False when the step could not be computed (and
        nothing was written): see `run`."""
        if torch.compiler.is_compiling():
            step_program(self.op_id, self.lrs, self.momenta or [], self.mutable_arrays(), metric)
            return True
        return self.run(metric=metric)

    def mutable_arrays(self) -> list[torch.Tensor]:
        """Every array a step writes besides the LRs and momenta."""
        return [self.counters, self.shadow, self.stage_counters, self.stage_state, self.stage_last_lr]

    def run(self, mode: int = ADVANCE, is_initial: bool = False, metric: torch.Tensor | None = None) -> bool:
        """One step (program.h's RunMode): a CUDA launch on the current stream, or the CPU loop. False
        when the step could not be computed, where torch's Python arithmetic raises (the program then
        wrote nothing and stays stopped; `check_status` raises the error).

        A CPU step says so at once. A CUDA step cannot without a synchronisation: a plain step returns
        False when an earlier step is seen to have failed (at the first step() after the failing one
        has run); a run at the current counters (once per program) synchronises and says at once."""
        address, is_f64 = (0, True) if metric is None else (metric.data_ptr(), metric.dtype == torch.float64)
        if not self.is_cuda:
            return _C.run_program(self.capsule, mode, is_initial, address, is_f64) == 0
        # On the program's device and its current stream, whichever device is the current one.
        stream = torch.cuda.current_stream(self.device).cuda_stream
        if _cuda.launch(self.capsule, self.device.index, stream, mode, is_initial, address, is_f64) != 0:
            return False
        return mode == ADVANCE or int(self.counters[COUNTER_STATUS]) == 0

    # -- reading the state back ------------------------------------------------------------------

    def check_status(self) -> None:
        """Raises what torch would have raised at the step the program stopped at, if it stopped.

        Eager CPU steps never get here stopped (a failing step runs torch's code instead, which
        raises torch's error at that step); a stopped program is one whose failure could not be
        raised when it happened: a CUDA step, a step inside torch.compile's graph, a recorded curve.
        Its steps since then changed nothing, and every later step raises again."""
        status, epoch = self.counters[COUNTER_STATUS : COUNTER_STATUS_EPOCH + 1].tolist()
        if status == STATUS_ONE_CYCLE_END:
            total = next(m.total_steps for m in self.members if hasattr(m, "total_steps"))
            raise ValueError(
                f"Tried to step {epoch} times. The specified number of total steps is {total}"
            )
        if status == STATUS_SCHEDULE:
            # The schedule in Python, at the step the engine could not compute, raises Python's error.
            for member in self.members:
                if hasattr(member, "_raise_schedule_error"):
                    member._raise_schedule_error(epoch)
        if status in (STATUS_ARITHMETIC, STATUS_SCHEDULE):
            raise ScheduleArithmeticError(
                f"schedx: the schedule's arithmetic failed at step {epoch} (torch's Python arithmetic "
                "raises there); the learning rates were left as they were"
            )

    def write_back(self) -> None:
        """Copies the program's counters, state and `_last_lr` into the schedulers' instance dicts."""
        counters = self.stage_counters.tolist()
        states = self.stage_state.tolist()
        last_lrs = self.stage_last_lr
        for k, member in enumerate(self.members):
            if member is None:
                continue
            d = member.__dict__
            d["last_epoch"] = counters[k][0]
            if self.has_step_count[k]:
                d["_step_count"] = counters[k][1]
            d["_last_lr"] = self._as_lr_list(last_lrs[k])
            for j, name in enumerate(self.specs[k].state_names):
                d[name] = self.state_types[k][name](states[k][j])
        owner = self.owner
        if not self.owner_is_member and owner is not None:
            d = owner.__dict__
            if "last_epoch" in d:
                d["last_epoch"] = int(self.counters[COUNTER_LAST_EPOCH])
            d["_last_lr"] = self._as_lr_list(self.shadow)

    def _as_lr_list(self, values: torch.Tensor) -> list[torch.Tensor]:
        """`_last_lr` as torch keeps it for tensor LRs: one tensor per group, of the group's dtype, each
        its own (not a view of the program's array, which later steps fill); before torch 2.10, the
        groups' LR tensors themselves."""
        if not _torch_era.COPIES_GROUP_VALUES:
            return list(self.lrs)
        return [values[i].to(t.dtype, copy=True) for i, t in enumerate(self.lrs)]


# Programs by id, for the custom op (whose arguments are tensors and numbers, not Python objects).
_LIVE_PROGRAMS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_PROGRAM_IDS = itertools.count()


# The schema is written out: torch 2.5 cannot infer one from these annotations (`list[Tensor]`,
# `Tensor | None`); it is the one later releases infer.
@torch.library.custom_op(
    "schedx::step_program",
    mutates_args=("lrs", "momenta", "arrays"),
    schema="(SymInt program_id, Tensor(a1!)[] lrs, Tensor(a2!)[] momenta, Tensor(a3!)[] arrays, Tensor? metric) -> ()",
)
def step_program(
    program_id: int,
    lrs: list[torch.Tensor],
    momenta: list[torch.Tensor],
    arrays: list[torch.Tensor],
    metric: torch.Tensor | None,
) -> None:
    """One plain step of program `program_id`, as an operator torch.compile can put in a graph: it
    writes the LR (and momentum) tensors and the program's arrays in place, nothing else.

    The program writes the tensors it was built over (their addresses are in it, as a CUDA graph
    needs). Under functionalization the op is handed copies instead: their values go in first and the
    results come back out, so the graph sees the writes it was told of."""
    program = _LIVE_PROGRAMS[program_id]
    bound = [*program.lrs, *(program.momenta or []), *program.mutable_arrays()]
    given = [*lrs, *momenta, *arrays]
    copies = [(b, g) for b, g in zip(bound, given, strict=True) if b.data_ptr() != g.data_ptr()]
    for b, g in copies:
        b.copy_(g)
    computed = program.run(metric=metric)
    for b, g in copies:
        g.copy_(b)
    if not computed:
        # A graph cannot run torch's code for this step instead: the error, at this step (CPU) or at
        # the first step that sees it (CUDA); the program stays stopped.
        program.check_status()


@step_program.register_fake
def _step_program_fake(program_id, lrs, momenta, arrays, metric) -> None:
    # Shapes do not change: the op only writes into its inputs.
    return None


def tensor_mode_class(cls):
    """The subclass a scheduler of class `cls` takes in tensor mode (one per class, cached)."""
    cached = cls.__dict__.get("_tensor_mode_subclass")
    if cached is not None:
        return cached

    def held(name):
        def read(self):
            program = self.__dict__["_tensor_program"]
            program.check_status()
            program.write_back()
            try:
                return self.__dict__[name]
            except KeyError:
                raise AttributeError(name) from None

        return property(read)

    namespace = {name: held(name) for name in (*COUNTER_ATTRIBUTES, *cls._tensor_state_names)}
    namespace["__setattr__"] = _tensor_setattr
    namespace["__reduce_ex__"] = _tensor_reduce_ex
    namespace["_in_tensor_mode"] = True
    if cls.step in _engine.ENGINE_STEPS:
        # The engine's step (a builtin) would leave the tensor step to _python_step anyway; as a
        # Python function here, torch.compile can trace it.
        namespace["step"] = cls._python_step
    namespace["state_dict"] = _tensor_state_dict
    namespace["load_state_dict"] = _tensor_load_state_dict
    namespace["__module__"] = cls.__module__
    namespace["__qualname__"] = cls.__qualname__
    namespace["__doc__"] = cls.__doc__
    namespace["_tensor_base_class"] = cls
    subclass = type(cls.__name__, (cls,), namespace)
    cls._tensor_mode_subclass = subclass
    return subclass


def _tensor_setattr(self, name, value):
    """Any assignment (a counter, a hyperparameter) ends tensor mode: the next step builds a program
    from the new values, as torch's next step would read them."""
    leave(self)
    object.__setattr__(self, name, value)


def _tensor_reduce_ex(self, protocol):
    """Pickling and copy.deepcopy see the scheduler out of tensor mode (a program holds raw device
    addresses); it re-enters at its next step."""
    leave(self)
    return self.__reduce_ex__(protocol)


_NO_METRIC = object()


def tensor_step(scheduler, epoch=None, metrics=_NO_METRIC) -> bool:
    """step() of a scheduler in tensor mode (every class's step() starts here when
    `_in_tensor_mode`, so a step() method bound before tensor mode began works too): one engine
    call, True. Anything but a plain step of the program's owner (a `step(epoch)`, a child stepped by
    hand, a changed param-group list) leaves tensor mode and returns False: the caller's own step
    then runs."""
    program = scheduler.__dict__["_tensor_program"]
    takes_metric = metrics is not _NO_METRIC
    if (
        epoch is None
        and program.owner is scheduler
        and program.reads_metric == takes_metric
        and program.still_bound()
    ):
        if program.step(program.metric_tensor(metrics) if takes_metric else None):
            return True
        if program.is_cuda:
            program.check_status()
        # A CPU step the program could not compute wrote nothing: torch's code runs it from the state
        # before it, and raises torch's error there, as torch does; the next step enters again.
    leave(scheduler)
    return False


def _tensor_state_dict(self):
    program = self.__dict__["_tensor_program"]
    program.check_status()
    program.write_back()
    state = super(type(self), self).state_dict()
    state.pop("_tensor_program", None)
    return state


def _tensor_load_state_dict(self, state_dict):
    leave(self)
    return self.load_state_dict(state_dict)


def _exact_counters(scheduler) -> bool:
    """Counters a program can hold: ints (a `step(epoch)` may leave a float epoch), far enough below
    2**53 that the program's double arithmetic on them is exact for any number of steps."""
    d = scheduler.__dict__
    return all(
        type(d.get(name, 0)) is int and abs(d.get(name, 0)) < 2**52 for name in ("last_epoch", "_step_count")
    )


def _is_float32_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.float32


def _arithmetic_is_torchs(specs, lrs) -> bool:
    """Whether a program computes these LRs in torch's arithmetic. torch computes an expression in the
    dtype of the tensors it meets; a program computes a float32 LR's per-group rules in float32 from
    a float32 base_lr, and everything else in double. So a base_lr of another kind than its LR (a
    Python float base for a float32 LR, say, after loading a float run's state), or a float32 tensor
    among the other per-group values (CyclicLR's or OneCycleLR's bounds), is left to torch's code."""
    for spec in specs:
        for r, row in enumerate(spec.rows):
            is_base_lr = r == 0 and spec.family in (FAMILY_PLAN, FAMILY_SCHEDULE)
            for value, lr in zip(row, lrs):
                if is_base_lr and _is_float32_tensor(value) != (lr.dtype == torch.float32):
                    return False
                if not is_base_lr and _is_float32_tensor(value):
                    return False
    return True


@torch.compiler.disable
def enter(owner, members, stages, composition=SINGLE, seq_milestones=()) -> Program | None:
    """Puts `owner` (and its `members`) in tensor mode, or returns None when the LRs or the schedule
    do not allow it (torch's own code then runs). Outside any torch.compile graph (a step that enters
    tensor mode breaks the graph): building a program is not graph work, and torch 2.6's dynamo failed
    on it (SpeculationLog diverged). `stages()` gives the members' StageSpecs; it is
    called only when every LR is a tensor, and a schedule it cannot describe (a malformed state dict,
    say) stays with torch's code, which raises torch's error."""
    if len(members) > MAX_STAGES or not all(_exact_counters(s) for s in (owner, *members)):
        return None
    lrs = lr_tensors(owner.optimizer)
    if lrs is None:
        return None
    try:
        specs = stages()
    except STAGE_ERRORS:
        return None
    if any(spec is None for spec in specs) or not _arithmetic_is_torchs(specs, lrs):
        return None
    momenta = None
    momentum_specs = [(m, s) for m, s in zip(members, specs) if s.uses_momentum]
    if momentum_specs:
        member = momentum_specs[0][0]
        momenta = momentum_tensors(owner.optimizer, member.use_beta1, lrs[0].device)
        if momenta is None:
            return None
    if _rows_read_written(specs, lrs):
        return None
    if momenta is not None:
        momenta = _own_momenta(owner.optimizer, [owner, *members], member.use_beta1, momenta)
    program = Program(owner, members, specs, composition, seq_milestones, lrs, momenta)
    for scheduler in {id(s): s for s in (owner, *members)}.values():
        scheduler.__dict__["_tensor_program"] = program
        scheduler.__class__ = tensor_mode_class(type(scheduler))
    return program


def leave(scheduler) -> None:
    """Ends tensor mode for the program `scheduler` belongs to: its state goes back to the instances."""
    program = scheduler.__dict__.get("_tensor_program")
    if program is None:
        return
    program.write_back()
    for s in program.schedulers():
        s.__dict__.pop("_tensor_program", None)
        # Another thread's leave() may have restored its class already.
        object.__setattr__(s, "__class__", getattr(type(s), "_tensor_base_class", type(s)))
