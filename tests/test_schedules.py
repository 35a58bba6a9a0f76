"""Custom schedules (schedx.schedules) and ScheduleLR: the engine computes what Python computes for the
same expression; the primitives and families are their reference formulas, written here again; a
ScheduleLR is torch's LambdaLR with the schedule as its lambda."""
from __future__ import annotations

import bisect
import io
import math
import pickle
import pickletools
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from twins import PROFILE
from schedx import _C, lr_scheduler as schedx_lr, schedules as S
from schedx.schedules import _expression

torch_lr = torch.optim.lr_scheduler
BASE_LRS = (0.1, 0.03, 0.25)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def make_optimizer(lrs=BASE_LRS):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=0.1)


def lrs_of(optimizer):
    return [g["lr"] for g in optimizer.param_groups]


def run(build, steps=120, lrs=BASE_LRS):
    """Every group's LR after each step of the scheduler `build(optimizer)` makes."""
    optimizer = make_optimizer(lrs)
    scheduler = build(optimizer)
    out = [lrs_of(optimizer)]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append(lrs_of(optimizer))
    return out


def values(schedule, steps, base_lr=None):
    """The engine's values of a compiled schedule at steps 0 .. steps - 1."""
    return [_C.eval_schedule(schedule._program(), t, 0.0 if base_lr is None else base_lr) for t in range(steps)]


# ---------------------------------------------------------------------------------------------------
# The engine evaluates Python's arithmetic
# ---------------------------------------------------------------------------------------------------

BINARY = ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "lt", "le", "gt", "ge", "eq", "ne"]
UNARY = ["neg", "abs", "not", "to_float", "to_int", "floor", "ceil", "cos", "sin", "tan", "exp", "log",
         "log2", "log10", "sqrt"]
CONSTANTS = st.one_of(
    st.integers(-40, 40),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, 2.0, 1e308, 5e-324]),
)


def expressions():
    leaves = st.one_of(st.just(S.step()), CONSTANTS.map(S.constant))
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.tuples(st.sampled_from(BINARY), children, children).map(lambda t: S.Schedule(t[0], (t[1], t[2]))),
            st.tuples(st.sampled_from(UNARY), children).map(lambda t: S.Schedule(t[0], (t[1],))),
            st.tuples(children, children, children).map(lambda t: S.Schedule("where", t)),
        ),
        max_leaves=12,
    )


class HugeInt(Exception):
    """An int power Python would spend minutes on (the engine declines it at once)."""


def python_value(schedule, step):
    """Python's value of the expression, and whether the engine may decline it: Python raised, or an
    intermediate value is an int beyond 2**53 or a complex number (the engine holds neither)."""
    seen = []

    def evaluate(node):
        op = node.op
        if op in ("const_int", "const_float"):
            value = node.value
        elif op == "step":
            value = step
        elif op == "where":
            value = evaluate(node.args[1] if evaluate(node.args[0]) else node.args[2])
        elif op in _expression._BINARY:
            a, b = evaluate(node.args[0]), evaluate(node.args[1])
            if op == "pow" and isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 64:
                raise HugeInt
            value = _expression._BINARY[op](a, b)
        else:
            value = _expression._UNARY[op](evaluate(node.args[0]))
        seen.append(value)
        return value

    try:
        value = evaluate(schedule)
    except (ArithmeticError, ValueError, TypeError, HugeInt):
        return None, True
    beyond = any(isinstance(v, complex) or (isinstance(v, int) and abs(v) >= 2**53) for v in seen)
    return value, beyond


def same_number(a, b) -> bool:
    if type(a) is bool:
        a = int(a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@settings(max_examples=3000, deadline=None, derandomize=PROFILE == "ci")  # ci: the same examples each run
@given(expressions(), st.one_of(st.integers(0, 1000), st.integers(0, 2**52)))
def test_the_engine_computes_pythons_value_or_declines_where_python_raises(schedule, step):
    try:
        program = schedule._program()
    except ValueError:  # a constant beyond 2**53, or too large for the stack: refused when compiled
        return
    got = _C.eval_schedule(program, step, 0.0)
    expected, may_decline = python_value(schedule, step)
    if got is None:
        assert may_decline, f"the engine declined {schedule} at {step}; Python gives {expected!r}"
    else:
        assert expected is not None and same_number(expected, got), (schedule, step, expected, got)


def test_a_schedule_too_large_for_the_engine_is_refused_by_schedule_lr():
    deep = S.step()
    for _ in range(40):
        deep = 1.0 + deep  # each level waits on the stack for the one inside it
    with pytest.raises(ValueError, match="too large for the engine"):
        schedx_lr.ScheduleLR(make_optimizer(), deep)


def test_malformed_code_is_declined_not_run():
    def program(op, arg):
        return struct.pack("<2i", _expression._OPCODES[op], arg), bytes(8), False

    jump_back = program("jump", 0)  # to itself
    pop_empty = program("add", 0)  # on an empty stack
    bad_const = program("const_float", 9)  # constant 9 of 1
    for program in (jump_back, pop_empty, bad_const):
        assert _C.eval_schedule(program, 3, 0.0) is None


def test_a_schedule_has_no_truth_value_outside_tracing():
    with pytest.raises(TypeError, match="where"):
        bool(S.step() < 3)


# ---------------------------------------------------------------------------------------------------
# One module to its users
# ---------------------------------------------------------------------------------------------------


def test_every_public_name_belongs_to_schedx_schedules_wherever_it_is_defined():
    """schedx.schedules is a package (the expression language, the primitives, the tracer, the
    families); help(), tracebacks and doctests name schedx.schedules, as when it was one module."""
    assert {name: getattr(S, name).__module__ for name in S.__all__} == dict.fromkeys(S.__all__, "schedx.schedules")


def pickled_classes(data: bytes) -> list[tuple[str, str]]:
    """The (module, name) of every class a pickle refers to (protocol 4: two strings, then STACK_GLOBAL)."""
    strings: list[str] = []
    classes = []
    for opcode, argument, _ in pickletools.genops(data):
        if isinstance(argument, str):
            strings.append(argument)
        elif opcode.name == "STACK_GLOBAL":
            classes.append((strings[-2], strings[-1]))
    return classes


def test_a_pickled_schedule_names_schedx_schedules_schedule_and_loads_with_its_values():
    schedule = S.warmup(5, S.cosine(steps=10))
    data = pickle.dumps(schedule, protocol=4)
    assert ("schedx.schedules", "Schedule") in pickled_classes(data)
    loaded = pickle.loads(data)
    assert [loaded(t) for t in range(20)] == [schedule(t) for t in range(20)]


# ---------------------------------------------------------------------------------------------------
# Primitives, against their formulas written again here
# ---------------------------------------------------------------------------------------------------

STEPS = 150


def test_linear_goes_from_start_to_end_then_holds():
    expected = [2.0 + (0.5 - 2.0) * (min(t, 40) / 40) for t in range(STEPS)]
    assert values(S.linear(2.0, 0.5, 40), STEPS) == expected


def test_cosine_goes_from_start_to_end_by_half_a_cosine_then_holds():
    expected = [0.1 + (1.0 - 0.1) * (0.5 * (1.0 + math.cos(math.pi * (min(t, 60) / 60)))) for t in range(STEPS)]
    assert values(S.cosine(1.0, 0.1, 60), STEPS) == expected


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decays_by_rate_every_n_steps(staircase):
    expected = [3.0 * 0.8 ** (t // 7 if staircase else t / 7) for t in range(STEPS)]
    assert values(S.exponential(0.8, every=7, start=3.0, staircase=staircase), STEPS) == expected


def test_polynomial_decays_with_power_then_holds():
    expected = [(1.0 - 0.01) * (1 - min(t, 90) / 90) ** 2.5 + 0.01 for t in range(STEPS)]
    assert values(S.polynomial(1.0, 0.01, 90, power=2.5), STEPS) == expected


def test_step_decay_is_gamma_to_the_number_of_finished_periods():
    assert values(S.step_decay(30, 0.1), STEPS) == [0.1 ** (t // 30) for t in range(STEPS)]


def test_piecewise_constant_counts_boundaries_at_or_before_the_step():
    boundaries, vals = [10, 10, 50, 99], [1.0, 0.5, 0.25, 0.1, 7]
    expected = [vals[bisect.bisect_right(boundaries, t)] for t in range(STEPS)]
    assert values(S.piecewise_constant(boundaries, vals), STEPS) == expected


def test_piecewise_linear_interpolates_between_points_and_holds_outside():
    points, vals = [5, 20, 80], [0.0, 1.0, 0.25]

    def reference(t):
        if t < 5:
            return 0.0
        if t < 20:
            return 0.0 + (1.0 - 0.0) * ((t - 5) / (20 - 5))
        if t < 80:
            return 1.0 + (0.25 - 1.0) * ((t - 20) / (80 - 20))
        return 0.25

    assert values(S.piecewise_linear(points, vals), STEPS) == [reference(t) for t in range(STEPS)]


def test_join_restarts_each_schedule_at_its_boundary():
    joined = S.join([S.linear(0.0, 1.0, 10), S.exponential(0.9), S.constant(0.05)], [10, 60])
    expected = [
        (0.0 + (1.0 - 0.0) * (min(t, 10) / 10)) if t < 10 else (1.0 * 0.9 ** ((t - 10) / 1)) if t < 60 else 0.05
        for t in range(STEPS)
    ]
    assert values(joined, STEPS) == expected


def test_warmup_rises_linearly_to_one_then_runs_the_schedule_from_its_start():
    expected = [
        0.1 + (1.0 - 0.1) * (min(t, 20) / 20) if t < 20 else 0.0 + (1.0 - 0.0) * (0.5 * (1.0 + math.cos(math.pi * (min(t - 20, 100) / 100))))
        for t in range(STEPS)
    ]
    assert values(S.warmup(20, S.cosine(steps=100), start=0.1), STEPS) == expected


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_is_a_triangle_wave_with_cyclic_lrs_amplitude_modes(mode):
    def reference(t):
        amplitude = {"triangular": 1.0, "triangular2": 0.5 ** (t // 16), "exp_range": 0.99**t}[mode]
        return 0.1 + (1.0 - 0.1) * (1.0 - abs(2.0 * ((t % 16) / 16) - 1.0)) * amplitude

    assert values(S.cyclic(0.1, 1.0, 16, mode=mode, gamma=0.99), STEPS) == [reference(t) for t in range(STEPS)]


def test_minimum_and_maximum_pick_as_pythons_min_and_max():
    a, b = S.step() / 10, S.constant(3)
    assert values(S.minimum(a, b), 60) == [min(t / 10, 3) for t in range(60)]
    assert values(S.maximum(a, b), 60) == [max(t / 10, 3) for t in range(60)]


def test_product_and_scale_multiply():
    schedule = S.scale(S.product(S.exponential(0.95), S.linear(0.5, 1.0, 10)), 2.0)
    expected = [1.0 * 0.95 ** (t / 1) * (0.5 + (1.0 - 0.5) * (min(t, 10) / 10)) * 2.0 for t in range(60)]
    assert values(schedule, 60) == expected


def test_a_schedule_called_in_python_gives_the_engines_values():
    schedule = S.warmup(10, S.cosine(end=0.01, steps=100))
    assert [schedule(t) for t in range(STEPS)] == values(schedule, STEPS)


@pytest.mark.parametrize("build", [
    lambda: S.linear(1.0, 0.0, 0),
    lambda: S.cosine(steps=-3),
    lambda: S.piecewise_constant([5, 2], [1, 2, 3]),
    lambda: S.piecewise_constant([5], [1]),
    lambda: S.piecewise_linear([3, 3], [1, 2]),
    lambda: S.cyclic(0.1, 1.0, 10, mode="sine"),
    lambda: S.join([S.constant(1.0)], [10]),
])
def test_invalid_primitive_settings_raise_value_error(build):
    with pytest.raises(ValueError):
        build()


# ---------------------------------------------------------------------------------------------------
# The families people use
# ---------------------------------------------------------------------------------------------------
# Reference step functions, written from the libraries' documented formulas.


def ref_constant_with_warmup(t, warmup):
    return t / max(1.0, warmup) if t < warmup else 1.0


def ref_linear_with_warmup(t, warmup, total):
    if t < warmup:
        return t / max(1, warmup)
    return max(0.0, (total - t) / max(1, total - warmup))


def ref_cosine_with_warmup(t, warmup, total, cycles=0.5, min_rate=0.0):
    if t < warmup:
        return t / max(1, warmup)
    progress = (t - warmup) / max(1, total - warmup)
    factor = 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
    return max(0, factor * (1 - min_rate) + min_rate)


def ref_hard_restarts(t, warmup, total, cycles):
    if t < warmup:
        return t / max(1, warmup)
    progress = (t - warmup) / max(1, total - warmup)
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))


def ref_polynomial(t, warmup, total, lr_init, lr_end, power):
    if t < warmup:
        return t / max(1, warmup)
    if t > total:
        return lr_end / lr_init
    return ((lr_init - lr_end) * (1 - (t - warmup) / (total - warmup)) ** power + lr_end) / lr_init


def ref_inverse_sqrt(t, warmup, timescale):
    if t < warmup:
        return t / max(1, warmup)
    return 1.0 / math.sqrt((t + timescale - warmup) / timescale)


def ref_wsd(t, warmup, stable, decay, decay_type, min_ratio):
    if t < warmup:
        return max(0.0, (t / max(1, warmup)) * (1.0 - min_ratio) + min_ratio)
    if t < warmup + stable:
        return 1.0
    if t < warmup + stable + decay:
        progress = (t - warmup - stable) / max(1, decay)
        factor = {"linear": 1.0 - progress,
                  "cosine": 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)),
                  "1-sqrt": 1.0 - math.sqrt(progress)}[decay_type]
        return max(0.0, factor * (1.0 - min_ratio) + min_ratio)
    return min_ratio


FAMILIES = {
    "constant_with_warmup": (S.constant_with_warmup(25), lambda t: ref_constant_with_warmup(t, 25)),
    "linear_with_warmup": (S.linear_with_warmup(10, 100), lambda t: ref_linear_with_warmup(t, 10, 100)),
    "cosine_with_warmup": (S.cosine_with_warmup(10, 100), lambda t: ref_cosine_with_warmup(t, 10, 100)),
    "cosine_with_warmup-2-cycles": (S.cosine_with_warmup(5, 100, num_cycles=2.0),
                                    lambda t: ref_cosine_with_warmup(t, 5, 100, 2.0)),
    "cosine_with_hard_restarts": (S.cosine_with_hard_restarts(10, 100, num_cycles=3),
                                  lambda t: ref_hard_restarts(t, 10, 100, 3)),
    "polynomial_decay_with_warmup": (S.polynomial_decay_with_warmup(10, 100, lr_init=0.1, lr_end=1e-4, power=2.0),
                                     lambda t: ref_polynomial(t, 10, 100, 0.1, 1e-4, 2.0)),
    "inverse_sqrt": (S.inverse_sqrt(20), lambda t: ref_inverse_sqrt(t, 20, 20)),
    "inverse_sqrt-timescale": (S.inverse_sqrt(0, timescale=50), lambda t: ref_inverse_sqrt(t, 0, 50)),
    "warmup_stable_decay-cosine": (S.warmup_stable_decay(10, 30, num_training_steps=100, min_lr_ratio=0.1),
                                   lambda t: ref_wsd(t, 10, 60, 30, "cosine", 0.1)),
    "warmup_stable_decay-1-sqrt": (S.warmup_stable_decay(10, 30, num_stable_steps=20, decay_type="1-sqrt"),
                                   lambda t: ref_wsd(t, 10, 20, 30, "1-sqrt", 0.0)),
    "cosine_with_min_lr": (S.cosine_with_min_lr(10, 100, min_lr_rate=0.05),
                           lambda t: ref_cosine_with_warmup(t, 10, 100, 0.5, 0.05)),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_gives_its_reference_formulas_factor(name):
    schedule, reference = FAMILIES[name]
    assert values(schedule, STEPS) == [reference(t) for t in range(STEPS)]


def transformers_schedule(name, optimizer):
    optimization = pytest.importorskip("transformers.optimization")
    factories = {
        "constant_with_warmup": lambda o: optimization.get_constant_schedule_with_warmup(o, 25),
        "linear_with_warmup": lambda o: optimization.get_linear_schedule_with_warmup(o, 10, 100),
        "cosine_with_warmup": lambda o: optimization.get_cosine_schedule_with_warmup(o, 10, 100),
        "cosine_with_warmup-2-cycles": lambda o: optimization.get_cosine_schedule_with_warmup(o, 5, 100, num_cycles=2.0),
        "cosine_with_hard_restarts": lambda o: optimization.get_cosine_with_hard_restarts_schedule_with_warmup(o, 10, 100, num_cycles=3),
        "polynomial_decay_with_warmup": lambda o: optimization.get_polynomial_decay_schedule_with_warmup(o, 10, 100, lr_end=1e-4, power=2.0),
        "inverse_sqrt": lambda o: optimization.get_inverse_sqrt_schedule(o, 20),
        "inverse_sqrt-timescale": lambda o: optimization.get_inverse_sqrt_schedule(o, 0, timescale=50),
        "warmup_stable_decay-cosine": lambda o: optimization.get_wsd_schedule(o, 10, 30, num_training_steps=100, min_lr_ratio=0.1),
        "warmup_stable_decay-1-sqrt": lambda o: optimization.get_wsd_schedule(o, 10, 30, num_stable_steps=20, decay_type="1-sqrt"),
        "cosine_with_min_lr": lambda o: optimization.get_cosine_with_min_lr_schedule_with_warmup(o, 10, 100, min_lr_rate=0.05),
    }
    return factories[name](optimizer)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_gives_the_lrs_of_transformers_own_scheduler(name):
    # transformers' polynomial schedule divides by the optimizer's default LR: 0.1 here, as above.
    optimizer = make_optimizer()
    theirs = transformers_schedule(name, optimizer)
    ours = run(lambda o: schedx_lr.ScheduleLR(o, FAMILIES[name][0]), steps=STEPS)
    expected = [lrs_of(optimizer)]
    for _ in range(STEPS):
        optimizer.step()
        theirs.step()
        expected.append(lrs_of(optimizer))
    assert ours == expected


def ref_timm_cosine(t, base, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, warmup_t, warmup_lr_init,
                    warmup_prefix, k_decay):
    """timm's CosineLRScheduler._get_lr for one group, as its documentation describes it."""
    if t < warmup_t:
        return warmup_lr_init + t * ((base - warmup_lr_init) / warmup_t)
    if warmup_prefix:
        t = t - warmup_t
    if cycle_mul != 1:
        i = math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    else:
        i = t // t_initial
        t_i = t_initial
        t_curr = t - (t_initial * i)
    if i >= cycle_limit:
        return lr_min
    lr_max = base * cycle_decay**i
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr**k_decay / t_i**k_decay))


TIMM_SETTINGS = [
    dict(t_initial=50, lr_min=1e-5, cycle_mul=1.0, cycle_decay=1.0, cycle_limit=1, warmup_t=0,
         warmup_lr_init=0.0, warmup_prefix=False, k_decay=1.0),
    dict(t_initial=30, lr_min=1e-4, cycle_mul=2.0, cycle_decay=0.5, cycle_limit=3, warmup_t=5,
         warmup_lr_init=1e-6, warmup_prefix=True, k_decay=1.0),
    dict(t_initial=40, lr_min=0.0, cycle_mul=1.0, cycle_decay=0.7, cycle_limit=4, warmup_t=3,
         warmup_lr_init=1e-3, warmup_prefix=False, k_decay=2.0),
]


@pytest.mark.parametrize("timm_settings", TIMM_SETTINGS, ids=["plain", "cycle_mul-decay-prefix", "k_decay"])
def test_timm_cosine_gives_timms_lr_for_every_group(timm_settings):
    schedule = S.timm_cosine(**timm_settings)
    assert schedule.absolute
    lrs = run(lambda o: schedx_lr.ScheduleLR(o, schedule), steps=STEPS)
    expected = [[ref_timm_cosine(t, base, **timm_settings) for base in BASE_LRS] for t in range(STEPS + 1)]
    assert lrs == expected


# ---------------------------------------------------------------------------------------------------
# ScheduleLR
# ---------------------------------------------------------------------------------------------------

SCHEDULE = S.warmup(10, S.cosine(end=0.02, steps=80))


def test_schedule_lr_equals_torchs_lambda_lr_with_the_schedule_as_lambda():
    assert run(lambda o: schedx_lr.ScheduleLR(o, SCHEDULE)) == run(lambda o: torch_lr.LambdaLR(o, SCHEDULE))


def test_schedule_lr_takes_one_schedule_per_group():
    per_group = [SCHEDULE, S.exponential(0.97), S.step_decay(20, 0.5)]
    assert run(lambda o: schedx_lr.ScheduleLR(o, per_group)) == run(lambda o: torch_lr.LambdaLR(o, per_group))


def test_schedule_lr_is_an_lr_scheduler_of_torch():
    scheduler = schedx_lr.ScheduleLR(make_optimizer(), SCHEDULE)
    assert isinstance(scheduler, torch_lr.LRScheduler)
    assert scheduler.get_last_lr() == [b * SCHEDULE(0) for b in BASE_LRS]


@pytest.mark.parametrize("composite", ["SequentialLR", "ChainedScheduler"])
def test_schedule_lr_in_a_composite_behaves_as_lambda_lr_there(composite):
    def build(lib, schedule_class):
        def make(o):
            children = [lib.ExponentialLR(o, gamma=0.9), schedule_class(o, SCHEDULE)]
            if composite == "SequentialLR":
                return lib.SequentialLR(o, children, milestones=[7])
            return lib.ChainedScheduler(children)
        return make

    assert run(build(schedx_lr, schedx_lr.ScheduleLR)) == run(build(torch_lr, torch_lr.LambdaLR))


def test_schedule_lr_state_dict_loads_into_torchs_lambda_lr_and_back():
    optimizer = make_optimizer()
    ours = schedx_lr.ScheduleLR(optimizer, SCHEDULE)
    for _ in range(15):
        ours.step()
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    theirs = torch_lr.LambdaLR(make_optimizer(), SCHEDULE)
    theirs.load_state_dict(state)
    assert theirs.last_epoch == 15
    again = schedx_lr.ScheduleLR(make_optimizer(), SCHEDULE)
    again.load_state_dict(theirs.state_dict())
    assert again.last_epoch == 15 and again.schedules == [SCHEDULE] * 3
    for _ in range(5):
        ours.step()
        again.step()
    assert again.get_last_lr() == ours.get_last_lr()


def test_schedule_lr_wants_one_schedule_per_group():
    with pytest.raises(ValueError, match="Expected 3 schedules, but got 2"):
        schedx_lr.ScheduleLR(make_optimizer(), [SCHEDULE, SCHEDULE])


def test_schedule_lr_refuses_what_is_not_a_schedule():
    with pytest.raises(TypeError, match="expected a schedule or a number"):
        schedx_lr.ScheduleLR(make_optimizer(), "cosine")


def test_a_schedule_that_raises_raises_pythons_error_at_that_step_and_leaves_the_lrs():
    broken = 1.0 / (S.step() - 6)  # ZeroDivisionError at step 6, as the same lambda in torch
    optimizer = make_optimizer()
    scheduler = schedx_lr.ScheduleLR(optimizer, broken)
    for _ in range(5):
        scheduler.step()
    before = lrs_of(optimizer)
    with pytest.raises(ZeroDivisionError):
        scheduler.step()
    assert lrs_of(optimizer) == before


def test_an_absolute_schedule_with_tensor_lrs_takes_torchs_path_with_the_same_values():
    schedule = S.timm_cosine(**TIMM_SETTINGS[1])
    optimizer = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": torch.tensor(b, dtype=torch.float64)} for b in BASE_LRS]
    )
    scheduler = schedx_lr.ScheduleLR(optimizer, schedule)
    for t in range(1, 40):
        scheduler.step()
        assert [float(g["lr"]) for g in optimizer.param_groups] == [
            ref_timm_cosine(t, b, **TIMM_SETTINGS[1]) for b in BASE_LRS
        ]


# ---------------------------------------------------------------------------------------------------
# The seed's hand-written schedule
# ---------------------------------------------------------------------------------------------------


def adjust_learning_rate(optimizer, epoch, base_lr):
    """The classic hand-written schedule: the LR decayed by 10 every 30 epochs."""
    lr = base_lr * 0.1 ** (epoch // 30)
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr


@pytest.mark.parametrize("base_lr", [0.1, 0.05, 0.4, 1.0])
def test_the_hand_written_schedule_as_a_custom_schedule_is_identical_to_it(base_lr):
    optimizer = make_optimizer([base_lr])
    hand_written = []
    for epoch in range(300):
        adjust_learning_rate(optimizer, epoch, base_lr)
        hand_written.append(lrs_of(optimizer))
    assert run(lambda o: schedx_lr.ScheduleLR(o, S.step_decay(30, 0.1)), 299, [base_lr]) == hand_written


@pytest.mark.parametrize("base_lr", [0.1, 0.05, 0.4, 1.0])
def test_the_hand_written_schedule_is_identical_to_steplr_over_the_seeds_90_epochs(base_lr):
    ours = run(lambda o: schedx_lr.ScheduleLR(o, S.step_decay(30, 0.1)), 89, [base_lr])
    assert ours == run(lambda o: torch_lr.StepLR(o, step_size=30, gamma=0.1), 89, [base_lr])


@pytest.mark.parametrize("base_lr", [0.1, 0.05, 0.4, 1.0])
def test_the_hand_written_schedule_is_steplrs_closed_form_at_every_epoch(base_lr):
    # StepLR's plain step multiplies by gamma at each milestone; from the fourth the product and
    # 0.1 ** k can differ in the last bit. StepLR's closed form (step(epoch)) is the formula itself.
    optimizer = make_optimizer([base_lr])
    steplr = torch_lr.StepLR(optimizer, step_size=30, gamma=0.1)
    schedule = S.step_decay(30, 0.1)
    for epoch in range(1, 300):
        steplr.step(epoch)
        assert lrs_of(optimizer) == [base_lr * schedule(epoch)]


# ---------------------------------------------------------------------------------------------------
# Composing factor schedules and LR schedules (built on base_lr)
# ---------------------------------------------------------------------------------------------------

TIMM = S.timm_cosine(t_initial=40, lr_min=1e-5)  # an LR schedule: its value is the LR
COSINE = S.cosine(steps=30, end=0.1)  # a factor schedule: its value multiplies the initial LR


def as_lr(part, t, base):
    """The LR `part` (a schedule or a number, a number being a constant factor) gives at step t."""
    return part.lr(t, base) if isinstance(part, S.Schedule) else base * part


def joined_lrs(parts, boundaries, steps=STEPS):
    """What join(parts, boundaries) means for every group: part k's own LR, from its step 0 at its boundary."""
    starts = [0, *boundaries]
    out = []
    for t in range(steps + 1):
        k = bisect.bisect_right(boundaries, t)
        out.append([as_lr(parts[k], t - starts[k], base) for base in BASE_LRS])
    return out


@pytest.mark.parametrize(
    "parts",
    [[COSINE, TIMM], [TIMM, COSINE], [0.5, TIMM], [TIMM, 0.5, COSINE]],
    ids=["factor-then-lr", "lr-then-factor", "number-then-lr", "lr-number-factor"],
)
def test_join_of_factor_and_lr_schedules_gives_each_parts_own_lr(parts):
    boundaries = [10, 25][: len(parts) - 1]
    schedule = S.join(parts, boundaries)
    assert schedule.absolute
    assert run(lambda o: schedx_lr.ScheduleLR(o, schedule), steps=STEPS) == joined_lrs(parts, boundaries)


def test_warmup_of_an_lr_schedule_ramps_the_lr_to_the_initial_lr_where_it_starts():
    schedule = S.warmup(5, TIMM)
    lrs = run(lambda o: schedx_lr.ScheduleLR(o, schedule), steps=STEPS)
    assert lrs == joined_lrs([S.linear(0.0, 1.0, 5), TIMM], [5])
    assert lrs[5] == [TIMM.lr(0, base) for base in BASE_LRS] == list(BASE_LRS)


def test_warmup_of_an_lr_schedule_starts_at_start_times_the_initial_lr():
    lrs = run(lambda o: schedx_lr.ScheduleLR(o, S.warmup(5, TIMM, start=0.1)), steps=3)
    assert lrs[0] == [0.1 * base for base in BASE_LRS]


def test_piecewise_constant_with_an_lr_schedule_takes_the_numbers_as_factors():
    schedule = S.piecewise_constant([10, 30], [0.5, TIMM, 0.1])
    lrs = run(lambda o: schedx_lr.ScheduleLR(o, schedule), steps=STEPS)
    expected = [[0.5 * b if t < 10 else TIMM.lr(t, b) if t < 30 else 0.1 * b for b in BASE_LRS] for t in range(STEPS + 1)]
    assert lrs == expected


def test_piecewise_linear_with_an_lr_schedule_takes_the_numbers_as_factors():
    schedule = S.piecewise_linear([0, 10], [0.5, TIMM])

    def expected(t, b):
        start = 0.5 * b
        return TIMM.lr(t, b) if t >= 10 else start + (TIMM.lr(t, b) - start) * ((t - 0) / (10 - 0))

    lrs = run(lambda o: schedx_lr.ScheduleLR(o, schedule), steps=STEPS)
    assert lrs == [[expected(t, b) for b in BASE_LRS] for t in range(STEPS + 1)]


def test_numbers_chosen_by_the_step_inside_an_lr_schedule_are_lrs():
    t = S.step()
    schedule = S.where(t < 10, TIMM, S.where(t < 20, 1e-4, 1e-5))
    lrs = run(lambda o: schedx_lr.ScheduleLR(o, schedule), steps=STEPS)
    expected = [[TIMM.lr(k, b) if k < 10 else 1e-4 if k < 20 else 1e-5 for b in BASE_LRS] for k in range(STEPS + 1)]
    assert lrs == expected


@pytest.mark.parametrize(
    "factor",
    [TIMM / S.base_lr(), S.where(S.base_lr() > 0.05, 0.5, 1.0), 1e-3 / S.base_lr()],
    ids=["lr-over-base-lr", "chosen-by-base-lr", "number-over-base-lr"],
)
def test_a_factor_that_reads_base_lr_multiplies_the_initial_lr(factor):
    assert not factor.absolute
    lrs = run(lambda o: schedx_lr.ScheduleLR(o, factor), steps=STEPS)
    assert lrs == [[b * factor(t, b) for b in BASE_LRS] for t in range(STEPS + 1)]


MEANINGLESS = {
    "factor + lr": lambda: COSINE + TIMM,
    "lr - factor": lambda: TIMM - COSINE,
    "lr % factor": lambda: TIMM % S.step(),
    "factor < lr": lambda: COSINE < TIMM,
    "where(factor, lr)": lambda: S.where(S.step() < 10, COSINE, TIMM),
    "minimum(lr, factor)": lambda: S.minimum(TIMM, COSINE),
    "maximum(factor, lr)": lambda: S.maximum(COSINE, TIMM),
    "lr * lr": lambda: TIMM * S.base_lr(),
    "product(lr, lr)": lambda: S.product(COSINE, TIMM, TIMM),
    "scale(lr, lr)": lambda: S.scale(TIMM, S.base_lr()),
    "factor / lr": lambda: COSINE / TIMM,
    "factor // lr": lambda: S.step() // S.base_lr(),
    "lr ** 2": lambda: TIMM**2,
    "2 ** lr": lambda: 2 ** S.base_lr(),
    "cos(lr)": lambda: S.cos(TIMM),
    "exp(lr)": lambda: S.exp(S.base_lr()),
    "log(lr)": lambda: S.log(TIMM),
    "sqrt(lr)": lambda: S.sqrt(TIMM),
    "linear(lr, factor)": lambda: S.linear(start=TIMM, end=COSINE, steps=10),
    "exponential(rate=lr)": lambda: S.exponential(TIMM),
}


@pytest.mark.parametrize("build", MEANINGLESS.values(), ids=MEANINGLESS.keys())
def test_a_composition_that_is_neither_a_factor_nor_an_lr_raises_when_built(build):
    with pytest.raises(ValueError, match="neither a factor nor an LR|make the factor an LR"):
        build()


@pytest.mark.parametrize("value", [TIMM, "0.5"], ids=["schedule", "str"])
def test_constant_takes_only_a_number(value):
    with pytest.raises(TypeError, match="constant takes a number"):
        S.constant(value)


def test_a_factor_that_reads_base_lr_with_tensor_lrs_multiplies_the_initial_lr():
    factor = TIMM / S.base_lr()
    optimizer = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": torch.tensor(b, dtype=torch.float64)} for b in BASE_LRS]
    )
    scheduler = schedx_lr.ScheduleLR(optimizer, factor)
    for t in range(1, 30):
        scheduler.step()
        assert [float(g["lr"]) for g in optimizer.param_groups] == [b * factor(t, b) for b in BASE_LRS]
