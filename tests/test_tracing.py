"""LambdaLR lambdas without Python per step: a lambda that is arithmetic on the step is traced once into
an engine schedule; any other is called per group, as torch does. The LRs are torch's either way."""
from __future__ import annotations

import functools
import math
from math import cos, pi

import pytest
import torch

from schedx import lr_scheduler as schedx_lr, schedules as S
from schedx.schedules import _expression

from twins import is_traced

torch_lr = torch.optim.lr_scheduler
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
BASE_LRS = (0.1, 0.02, 0.5)

WARMUP = 12
GAMMA = 0.93


def make_optimizer():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASE_LRS]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS)], lr=0.1)


def lrs_after_each_step(lib, lr_lambda, steps=150, cls="LambdaLR"):
    optimizer = make_optimizer()
    scheduler = getattr(lib, cls)(optimizer, lr_lambda)
    out = [[g["lr"] for g in optimizer.param_groups]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append([g["lr"] for g in optimizer.param_groups])
    return out, scheduler


def piecewise(epoch):
    if epoch < 10:
        return epoch / 10
    elif epoch < 50:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - 50) / 100))


def short_circuits(epoch):
    return (epoch > 20 and 0.5) or (epoch < 5 and 0.1) or 1.0


def with_defaults(epoch, gamma=0.9, every=7):
    return gamma ** (epoch // every)


def transformers_style(current_step: int, *, num_warmup_steps: int, num_training_steps: int):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


def closure_over(warmup, floor_value):
    return lambda e: max(floor_value, min(1.0, (e + 1) / warmup))


TRACEABLE = {
    "power": lambda e: 0.95**e,
    "min-warmup": lambda e: min(1.0, (e + 1) / 100),
    "floor-division": lambda e: 0.1 ** (e // 30),
    "conditional-expression": lambda e: e / 10 if e < 10 else 1.0,
    "if-elif-else": piecewise,
    "and-or": short_circuits,
    "globals": lambda e: min(1.0, e / WARMUP) * GAMMA**e,
    "from-math-import": lambda e: 0.5 * (1 + cos(pi * min(e, 100) / 100)),
    "closure": closure_over(25, 0.05),
    "default-arguments": with_defaults,
    "partial": functools.partial(transformers_style, num_warmup_steps=10, num_training_steps=120),
    "int-float-abs-max": lambda e: max(abs(70 - e) / 70, 0.1, float(int(e / 40)) / 10),
    "floor-ceil": lambda e: 1.0 / (1 + math.floor(e / 10) + math.ceil(e / 25)),
    "exp-log-sqrt": lambda e: math.exp(-e / 50) * math.log(e + 2) / math.sqrt(e + 1),
    "membership": lambda e: 0.5 if e in (3, 7, 11) else 1.0,
    "returns-int": lambda e: 1 if e < 40 else 0,
}


@pytest.mark.parametrize("name", TRACEABLE)
def test_an_arithmetic_lambda_is_traced_and_gives_torchs_lrs(name):
    expected, _ = lrs_after_each_step(torch_lr, TRACEABLE[name])
    got, scheduler = lrs_after_each_step(schedx_lr, TRACEABLE[name])
    assert is_traced(scheduler)
    assert got == expected


@pytest.mark.parametrize("name", ["power", "conditional-expression", "and-or", "returns-int"])
def test_a_multiplicative_lr_lambda_is_traced_and_gives_torchs_lrs(name):
    expected, _ = lrs_after_each_step(torch_lr, TRACEABLE[name], steps=60, cls="MultiplicativeLR")
    got, scheduler = lrs_after_each_step(schedx_lr, TRACEABLE[name], steps=60, cls="MultiplicativeLR")
    assert is_traced(scheduler)
    assert got == expected


def test_a_lambda_lr_given_an_lr_schedule_fails_as_torchs_does():
    # A schedule that mentions base_lr cannot be called with the step alone; torch raises TypeError.
    schedule = S.timm_cosine(t_initial=10)
    with pytest.raises(TypeError):
        torch_lr.LambdaLR(make_optimizer(), schedule)
    with pytest.raises(TypeError):
        schedx_lr.LambdaLR(make_optimizer(), schedule)


class Config:
    gamma = 0.9


CONFIG = Config()
TABLE = {0: 1.0, 5: 0.5}
CALLS = [0]


def uses_a_helper(epoch):
    return piecewise(epoch) * 0.5


def counts_calls(epoch):
    CALLS[0] += 1
    return 1.0


class CallableSchedule:
    def __call__(self, epoch):
        return 0.9**epoch


def checks_its_type(epoch):
    return 1.0 if isinstance(epoch, int) else 0.0


UNTRACEABLE = {
    "object-attribute": lambda e: CONFIG.gamma**e,
    "dict-lookup": lambda e: TABLE.get(e, 0.25),
    "helper-function": uses_a_helper,
    "side-effect": counts_calls,
    "callable-object": CallableSchedule(),
    "isinstance": checks_its_type,
    "string-result": lambda e: 1.0 if str(e) else 0.0,
}


@pytest.mark.parametrize("name", UNTRACEABLE)
def test_a_lambda_that_cannot_be_traced_is_called_as_torch_calls_it(name):
    expected, _ = lrs_after_each_step(torch_lr, UNTRACEABLE[name], steps=30)
    got, scheduler = lrs_after_each_step(schedx_lr, UNTRACEABLE[name], steps=30)
    assert not is_traced(scheduler)
    assert got == expected


def stateful(epoch):
    """Its value depends on how often it was called: tracing it once would freeze that."""
    global _STATEFUL_CALLS
    _STATEFUL_CALLS += 1
    return 0.99**_STATEFUL_CALLS


_STATEFUL_CALLS = 0


def test_a_lambda_whose_trace_disagrees_with_it_is_not_traced():
    with pytest.raises(S.TraceError):
        S.trace(stateful)


REBOUND = 0.9


def test_a_rebound_global_is_seen_at_the_next_step_as_torch_sees_it():
    global REBOUND
    lam = lambda e: REBOUND**e  # noqa: E731
    ours_opt, theirs_opt = make_optimizer(), make_optimizer()
    ours, theirs = schedx_lr.LambdaLR(ours_opt, lam), torch_lr.LambdaLR(theirs_opt, lam)
    try:
        for step in range(40):
            if step == 20:
                REBOUND = 0.5
            ours.step()
            theirs.step()
            assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in theirs_opt.param_groups]
        assert is_traced(ours)
    finally:
        REBOUND = 0.9


def test_a_lambda_replaced_in_the_list_is_called_from_then_on():
    ours_opt, theirs_opt = make_optimizer(), make_optimizer()
    ours = schedx_lr.LambdaLR(ours_opt, lambda e: 0.9**e)
    theirs = torch_lr.LambdaLR(theirs_opt, lambda e: 0.9**e)
    for step in range(30):
        if step == 10:
            for scheduler in (ours, theirs):
                scheduler.lr_lambdas[1] = lambda e: 0.5**e
        ours.step()
        theirs.step()
        assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in theirs_opt.param_groups]


def test_a_traced_lambda_that_raises_raises_the_same_error_at_the_same_step():
    lam = lambda e: 1.0 / (e - 8)  # noqa: E731
    ours_opt, theirs_opt = make_optimizer(), make_optimizer()
    ours, theirs = schedx_lr.LambdaLR(ours_opt, lam), torch_lr.LambdaLR(theirs_opt, lam)
    assert is_traced(ours)
    for _ in range(7):
        ours.step()
        theirs.step()
    for scheduler in (ours, theirs):
        with pytest.raises(ZeroDivisionError):
            scheduler.step()
    assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in theirs_opt.param_groups]


def test_a_lambda_beyond_the_engines_exact_ints_is_computed_by_python():
    lam = lambda e: 1.0 + (e * 10**15) % 7 / 100  # noqa: E731  (e * 10**15 passes 2**53 at e = 10)
    expected, _ = lrs_after_each_step(torch_lr, lam, steps=40)
    got, scheduler = lrs_after_each_step(schedx_lr, lam, steps=40)
    assert is_traced(scheduler)
    assert got == expected


def test_a_traced_lambda_lr_state_dict_is_torchs():
    lam = lambda e: 0.9**e  # noqa: E731
    _, ours = lrs_after_each_step(schedx_lr, lam, steps=10)
    _, theirs = lrs_after_each_step(torch_lr, lam, steps=10)
    assert ours.state_dict() == theirs.state_dict()


def test_a_function_with_too_many_paths_is_not_traced():
    def branchy(e):
        total = 0.0
        for k in range(8):
            if e % (k + 2) == 0:
                total += 1.0
        return total

    with pytest.raises(S.TraceError, match="paths"):
        S.trace(branchy)


def test_a_trace_stops_after_a_bounded_number_of_operations_over_all_its_paths():
    # Each path alone is short; together they exceed the bound, so a trace's cost is bounded whatever
    # the function computes.
    def many_short_paths(e):
        factor = 1.0
        for k in range(3):
            factor = factor * (0.5 if e % (k + 2) else 1.0)
        for _ in range(100):
            factor = factor + e * 0.0
        return factor

    with pytest.raises(S.TraceError, match="operations"):
        S.trace(many_short_paths)
    assert _expression._TRACING.operations <= _expression._MAX_TRACED_OPERATIONS + 1
