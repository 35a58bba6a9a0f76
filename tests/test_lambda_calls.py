"""A LambdaLR / MultiplicativeLR lambda is called exactly when and as often as torch calls it, or not at
all where calling it can make no difference (a traced lambda: schedx/schedules/_tracer.py's `trace`): whatever
the lambda does (keeps state, prints, changes in place, grows big ints, raises), every LR, type and
exception is torch's, and neither construction nor a step calls it at steps torch does not reach."""
from __future__ import annotations

import functools
import io
import itertools
import logging
import math
import random
import sys
from collections import Counter
from contextlib import contextmanager, redirect_stdout

import pytest
import torch

from schedx import _stepping, lr_scheduler as schedx_lr, schedules as S
from schedx.schedules import _expression

from twins import is_traced

torch_lr = torch.optim.lr_scheduler
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
BASE_LRS = (0.1, 0.02, 0.5)


def make_optimizer(lr_kind="float"):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASE_LRS]
    lrs = BASE_LRS if lr_kind == "float" else [torch.tensor(lr, dtype=torch.float64) for lr in BASE_LRS]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=0.1)


def outcome(action):
    """What an action gives: ("ok", value) or the exception's type and message."""
    try:
        return ("ok", action())
    except Exception as error:  # noqa: BLE001 - every exception is compared with torch's
        return (type(error), str(error))


def lrs(optimizer):
    # repr: exact for floats (a tensor's, of its value), and a NaN equals a NaN.
    return [
        (repr(g["lr"].item() if isinstance(g["lr"], torch.Tensor) else g["lr"]), type(g["lr"]))
        for g in optimizer.param_groups
    ]


def run(lib, lr_lambda, steps=40, cls="LambdaLR", between=None, lr_kind="float"):
    """Each step's outcome and LRs (values and types): construction, then `steps` steps, with
    `between(step)` run before each step."""
    optimizer = make_optimizer(lr_kind)
    made = outcome(lambda: getattr(lib, cls)(optimizer, lr_lambda))
    history = [(made[0] if made[0] != "ok" else "ok", lrs(optimizer))]
    if made[0] != "ok":
        return history, None
    scheduler = made[1]
    for k in range(steps):
        if between is not None:
            between(k)
        history.append((outcome(scheduler.step), lrs(optimizer), scheduler.last_epoch))
    return history, scheduler


def twins(make_lambda, **kwargs):
    """The histories of torch's scheduler and schedx's, each with its own fresh lambda (and whatever
    state `make_lambda` gives with it)."""
    histories = []
    for lib in (torch_lr, schedx_lr):
        lr_lambda, state = make_lambda()
        histories.append((run(lib, lr_lambda, **kwargs)[0], state()))
    return histories


def assert_called_at_most_as_torch(ours: list, theirs: list) -> None:
    """At no step more calls of the user's function than torch's (a traced lambda: none)."""
    assert not Counter(ours) - Counter(theirs)


def assert_as_torch(make_lambda, **kwargs):
    """schedx's LRs, types, exceptions and counters are torch's at every step (each with a lambda of
    its own from `make_lambda`), and its calls of the lambda at most torch's."""
    histories, calls = [], []
    for lib in (torch_lr, schedx_lr):
        lr_lambda = make_lambda()
        with steps_called_at(user_code(lr_lambda)) as seen:
            histories.append(run(lib, lr_lambda, **kwargs)[0])
        calls.append(seen)
    assert histories[1] == histories[0]
    assert_called_at_most_as_torch(calls[1], calls[0])


def user_code(fn):
    return (fn.func if isinstance(fn, functools.partial) else fn).__code__


@contextmanager
def steps_called_at(code):
    """The arguments of every call of a function with this code object (its traced copy, called with a
    symbolic step, is not counted: only calls with a number are the user's function's)."""
    seen: list = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code is code:
            value = next(iter(frame.f_locals.values()), None)
            if type(value) in (int, float):
                seen.append(value)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


# -- stateful lambdas: their value depends on how often they were called ------------------------------


def nonlocal_counter():
    calls = 0

    def lr_lambda(epoch):
        nonlocal calls
        calls += 1
        return 1 / (calls + 1)

    return lr_lambda, lambda: calls


def list_append():
    seen = []
    return (lambda epoch: seen.append(epoch) or 0.9 ** len(seen)), lambda: list(seen)


def default_list_append():
    def lr_lambda(epoch, seen=[]):  # noqa: B006 - the mutable default is the point
        seen.append(epoch)
        return 0.9 ** len(seen)

    return lr_lambda, lambda: list(lr_lambda.__defaults__[0])


def seeded_random():
    rng = random.Random(7)
    return (lambda epoch: 0.5 + rng.random()), lambda: rng.getstate()


def generator_values():
    values = itertools.count(1)
    return (lambda epoch: 1 / next(values)), lambda: next(values)


def generator_function():
    def halves():
        value = 1.0
        while True:
            yield value
            value /= 2

    values = halves()
    return (lambda epoch: next(values)), lambda: None


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, epoch):
        self.calls += 1
        return 0.9**self.calls


def callable_object():
    counting = Counting()
    return counting, lambda: counting.calls


GLOBAL_CALLS = 0


def global_counter():
    global GLOBAL_CALLS
    GLOBAL_CALLS = 0

    def lr_lambda(epoch):
        global GLOBAL_CALLS
        GLOBAL_CALLS += 1
        return 0.99**GLOBAL_CALLS

    return lr_lambda, lambda: GLOBAL_CALLS


STATEFUL = {
    "nonlocal-counter": nonlocal_counter,
    "list-append": list_append,
    "mutable-default": default_list_append,
    "random": seeded_random,
    "iterator": generator_values,
    "generator": generator_function,
    "callable-object-with-state": callable_object,
    "global-counter": global_counter,
}


@pytest.mark.parametrize("name", STATEFUL)
def test_a_stateful_lambda_gives_torchs_lrs_and_is_called_as_often(name):
    (expected, their_state), (got, our_state) = twins(STATEFUL[name])
    assert got == expected
    assert our_state == their_state


@pytest.mark.parametrize("name", ["nonlocal-counter", "global-counter", "list-append"])
def test_a_stateful_multiplicative_lambda_gives_torchs_lrs(name):
    (expected, their_state), (got, our_state) = twins(STATEFUL[name], cls="MultiplicativeLR")
    assert got == expected
    assert our_state == their_state


@pytest.mark.parametrize("name", ["nonlocal-counter", "global-counter"])
def test_a_lambda_that_changes_state_outside_itself_is_not_traced(name):
    with pytest.raises(S.TraceError):
        S.trace(STATEFUL[name]()[0])


# -- side effects: printing, logging --------------------------------------------------------------------


def printing():
    return (lambda epoch: print("epoch", epoch) or 0.9**epoch), lambda: None


def test_a_printing_lambda_prints_what_torchs_prints():
    printed = []
    for lib in (torch_lr, schedx_lr):
        out = io.StringIO()
        with redirect_stdout(out):
            history, _ = run(lib, printing()[0], steps=10)
        printed.append((out.getvalue(), history))
    assert printed[1] == printed[0]


def test_a_logging_lambda_logs_as_often_as_torchs():
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("schedx-test-lambda")
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    logged = []
    for lib in (torch_lr, schedx_lr):
        records.clear()
        history, _ = run(lib, lambda epoch: logger.info("epoch %d", epoch) or 0.9**epoch, steps=10)
        logged.append((list(records), history))
    assert logged[1] == logged[0]


# -- a pure lambda is never called where torch does not call it ----------------------------------------

BIG_INTS = {
    "int-power": lambda epoch: 1 / 10 ** (epoch // 3),
    "int-power-of-step": lambda epoch: 1 / (epoch + 1) ** epoch,
    "float-power-of-big-int": lambda epoch: 0.5 ** (epoch**2 * 10**14),
    "factorial": lambda epoch: 1 / math.factorial(epoch),
    "comb": lambda epoch: 1 / math.comb(2 * epoch, epoch),
    "shift": lambda epoch: 1 / (1 << (epoch // 2)),
    "string-digits": lambda epoch: 1 / len(str(10**epoch)),
    "format": lambda epoch: float("1e-%d" % (epoch // 5)),
    "f-string": lambda epoch: 1 / len(f"{epoch}"),
    "repeat-string": lambda epoch: 1 / len("ab" * epoch) if epoch else 1.0,
}


@pytest.mark.parametrize("name", BIG_INTS)
def test_a_big_int_lambda_is_called_only_where_torch_calls_it(name):
    assert_as_torch(lambda: BIG_INTS[name], steps=60)


PURE = {
    "power": lambda epoch: 0.95**epoch,
    "warmup": lambda epoch: min(1.0, (epoch + 1) / 10),
    "cosine": lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / 40)),
}


@pytest.mark.parametrize("name", PURE)
def test_a_traced_lambda_is_not_called_at_steps_torch_does_not_reach(name):
    with steps_called_at(PURE[name].__code__) as ours:
        got, scheduler = run(schedx_lr, PURE[name], steps=30)
    assert is_traced(scheduler)
    assert set(ours) <= set(range(31))


# -- where Python's arithmetic takes another path than the engine's -------------------------------------

EDGES = {
    "zero-division-at-construction": lambda epoch: 1 / epoch,
    "zero-division-later": lambda epoch: 1.0 / (epoch - 8),
    "int-zero-division-later": lambda epoch: 10 // (epoch - 5),
    "log-domain": lambda epoch: math.log(epoch),
    "sqrt-domain-later": lambda epoch: math.sqrt(10 - epoch),
    "float-overflow": lambda epoch: 10.0 ** (epoch * 40),
    "exp-overflow": lambda epoch: math.exp(epoch * 100),
    "complex-power": lambda epoch: (2.0 - epoch) ** 0.5,
    "zero-to-negative-power": lambda epoch: 0.0 ** (3 - epoch),
    "int-result": lambda epoch: epoch // 2 + 1,
    "int-or-float": lambda epoch: 1 if epoch < 5 else 0.5,
    "bool-result": lambda epoch: epoch < 7,
    "int-true-division": lambda epoch: (epoch + 1) / 3,
    "negative-floor-division": lambda epoch: (5 - epoch) // 3 / 4 + 2,
    "negative-modulo": lambda epoch: (5 - epoch) % 7 / 7 + 0.1,
    "int-past-exact-range": lambda epoch: 1 + (epoch * 10**15) % 7 / 100,
    "comparison-past-exact-range": lambda epoch: 0.5 if epoch * 3**33 > 2**55 else 1.0,
    "int-of-huge-float": lambda epoch: int(1e300 * epoch) % 3 + 1,
    "floor-of-infinity": lambda epoch: math.floor(1e308 * (epoch + 1) * 10) if epoch > 3 else 1.0,
    "unused-division-by-zero": lambda epoch: (1 / (epoch - 4), 0.5)[1],
    "nan": lambda epoch: math.inf * 0 if epoch == 3 else 1.0,
}


def unused_division(epoch):
    spare = 1 / (epoch - 4)  # noqa: F841 - unused, but Python computes it (and raises at 4)
    return 0.5


def assert_before_use(epoch):
    assert epoch < 6
    return 0.9**epoch


EDGES["unused-assignment"] = unused_division
EDGES["assert"] = assert_before_use


@pytest.mark.parametrize("cls", ["LambdaLR", "MultiplicativeLR"])
@pytest.mark.parametrize("name", EDGES)
def test_a_lambda_gives_torchs_values_types_and_exceptions_at_every_step(name, cls):
    assert_as_torch(lambda: EDGES[name], steps=20, cls=cls)


def test_the_engine_stands_in_for_a_lambda_that_raises_at_some_steps():
    # The lambda is traced: at the steps it raises, the engine hands the step to Python.
    _, scheduler = run(schedx_lr, EDGES["zero-division-later"], steps=3)
    assert is_traced(scheduler)


# -- in-place changes of the callable between steps --------------------------------------------------


def with_default(epoch, gamma=0.9):
    return gamma**epoch


def with_keyword_default(epoch, *, gamma=0.9):
    return gamma**epoch


def rate(epoch, gamma, every=1):
    return gamma ** (epoch // every)


def changed_at(step, change):
    return lambda k: change() if k == step else None


def fresh_function(fn):
    """A copy of `fn` with its own defaults, so that changing it leaves `fn` alone."""
    copy = type(fn)(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = dict(fn.__kwdefaults__) if fn.__kwdefaults__ else None
    return copy


def make_closure():
    gamma = 0.9

    def lr_lambda(epoch):
        return gamma**epoch

    def set_gamma(value):
        nonlocal gamma
        gamma = value

    return lr_lambda, set_gamma


def defaults_replaced():
    fn = fresh_function(with_default)
    return fn, lambda: setattr(fn, "__defaults__", (0.5,))


def kwdefaults_changed_in_place():
    fn = fresh_function(with_keyword_default)
    return fn, lambda: fn.__kwdefaults__.__setitem__("gamma", 0.5)


def code_replaced():
    fn = fresh_function(with_default)
    return fn, lambda: setattr(fn, "__code__", (lambda epoch, gamma=0.9: 0.5 * gamma**epoch).__code__)


def closure_rebound():
    fn, set_gamma = make_closure()
    return fn, lambda: set_gamma(0.5)


def partial_keyword_changed():
    fn = functools.partial(rate, gamma=0.9)
    return fn, lambda: fn.keywords.__setitem__("gamma", 0.5)


def partial_keyword_added():
    fn = functools.partial(rate, gamma=0.9)
    return fn, lambda: fn.keywords.__setitem__("every", 3)


def partial_state_replaced():
    fn = functools.partial(rate, gamma=0.9)
    return fn, lambda: fn.__setstate__((rate, (), {"gamma": 0.5, "every": 2}, None))


def global_rebound():
    namespace = {"GAMMA": 0.9}
    exec("lr_lambda = lambda epoch: GAMMA ** epoch", namespace)
    return namespace["lr_lambda"], lambda: namespace.__setitem__("GAMMA", 0.5)


def builtin_shadowed():
    namespace = {}
    exec("lr_lambda = lambda epoch: max(0.3, 0.9 ** epoch)", namespace)
    return namespace["lr_lambda"], lambda: namespace.__setitem__("max", min)


def module_shadowed():
    namespace = {"math": math}
    exec("lr_lambda = lambda epoch: math.cos(epoch / 10)", namespace)
    impostor = type("Impostor", (), {"cos": staticmethod(math.sin)})
    return namespace["lr_lambda"], lambda: namespace.__setitem__("math", impostor)


IN_PLACE = {
    "defaults": defaults_replaced,
    "kwdefaults": kwdefaults_changed_in_place,
    "code": code_replaced,
    "closure-cell": closure_rebound,
    "partial-keyword": partial_keyword_changed,
    "partial-new-keyword": partial_keyword_added,
    "partial-setstate": partial_state_replaced,
    "global": global_rebound,
    "builtin-shadowed-by-a-global": builtin_shadowed,
    "module-global": module_shadowed,
}


@pytest.mark.parametrize("lr_kind", ["float", "tensor"])
@pytest.mark.parametrize("name", IN_PLACE)
def test_a_change_to_the_lambda_between_steps_is_seen_as_torch_sees_it(name, lr_kind):
    histories, calls = [], []
    for lib in (torch_lr, schedx_lr):
        fn, change = IN_PLACE[name]()
        with steps_called_at(user_code(fn)) as seen:
            histories.append(run(lib, fn, steps=30, between=changed_at(10, change), lr_kind=lr_kind)[0])
        calls.append(seen)
    assert histories[1] == histories[0]
    assert_called_at_most_as_torch(calls[1], calls[0])


def replaced_in_the_list(lib, optimizer):
    scheduler = lib.LambdaLR(optimizer, lambda epoch: 0.9**epoch)
    return scheduler, lambda: scheduler.lr_lambdas.__setitem__(0, lambda epoch: 0.5**epoch)


@pytest.mark.parametrize("lr_kind", ["float", "tensor"])
def test_a_lambda_replaced_in_the_schedulers_list_is_called_as_torch_calls_it(lr_kind):
    histories = []
    for lib in (torch_lr, schedx_lr):
        optimizer = make_optimizer(lr_kind)
        scheduler, replace = replaced_in_the_list(lib, optimizer)
        history = []
        for k in range(20):
            if k == 8:
                replace()
            scheduler.step()
            history.append(lrs(optimizer))
        histories.append(history)
    assert histories[1] == histories[0]


@pytest.mark.parametrize("name", IN_PLACE)
def test_a_lambda_that_can_change_in_place_is_traced_until_it_does(name):
    fn, _ = IN_PLACE[name]()
    _, scheduler = run(schedx_lr, fn, steps=3)
    assert is_traced(scheduler)


class AlwaysEqual:
    def __call__(self, epoch):
        return 0.5

    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


def test_a_lambda_replaced_by_an_object_that_claims_equality_is_called():
    def replace(lib_scheduler):
        return lambda k: lib_scheduler.lr_lambdas.__setitem__(0, AlwaysEqual()) if k == 5 else None

    histories = []
    for lib in (torch_lr, schedx_lr):
        optimizer = make_optimizer()
        scheduler = lib.LambdaLR(optimizer, lambda epoch: 0.9**epoch)
        steps = []
        for k in range(12):
            replace(scheduler)(k)
            scheduler.step()
            steps.append(lrs(optimizer))
        histories.append(steps)
    assert histories[1] == histories[0]


# -- cost: a lambda that changes at every step is not traced at every step --------------------------


def test_a_global_changing_at_every_step_stops_being_traced(monkeypatch):
    traces = []
    real_trace = S.trace
    monkeypatch.setattr(S, "trace", lambda fn: traces.append(fn) or real_trace(fn))
    namespace = {"GAMMA": 0.9}
    exec("lr_lambda = lambda epoch: GAMMA ** epoch", namespace)

    def change(k):
        namespace["GAMMA"] = 0.9 - k / 1000

    expected, _ = run(torch_lr, namespace["lr_lambda"], steps=200, between=change)
    namespace["GAMMA"] = 0.9
    got, _ = run(schedx_lr, namespace["lr_lambda"], steps=200, between=change)
    assert got == expected
    assert len(traces) <= _stepping._MAX_RETRACES + 2


def test_a_lambda_computing_too_much_on_the_step_stops_tracing_early():
    def expensive(epoch):
        total = 0.0
        for k in range(10**6):
            total = total + epoch * k
        return total

    with pytest.raises(S.TraceError, match="operations"):
        S.trace(expensive)


# -- tensor LRs: a program cannot hand a step to Python -------------------------------------------------


def tensor_lrs_after_each_step(lib, lr_lambda, steps=60):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in BASE_LRS]
    optimizer = torch.optim.Adam(
        [{"params": [p], "lr": torch.tensor(lr, dtype=torch.float64)} for p, lr in zip(params, BASE_LRS)]
    )
    scheduler = lib.LambdaLR(optimizer, lr_lambda)
    out = []
    for _ in range(steps):
        out.append(outcome(scheduler.step))
        out.append([g["lr"].item() for g in optimizer.param_groups])
    return out


@pytest.mark.parametrize(
    "lr_lambda",
    [
        lambda epoch: 1 / 10 ** (epoch // 3),
        lambda epoch: 1 + (epoch * 10**15) % 7 / 100,
        lambda epoch: 0.5 if epoch * 3**33 > 2**55 else 1.0,
    ],
    ids=["int-power", "product-past-2**53", "comparison-past-2**53"],
)
def test_a_lambda_whose_ints_pass_2_53_gives_torchs_tensor_lrs(lr_lambda):
    assert tensor_lrs_after_each_step(schedx_lr, lr_lambda) == tensor_lrs_after_each_step(torch_lr, lr_lambda)


def test_a_lambda_whose_ints_stay_exact_runs_as_a_tensor_mode_program():
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.Adam([{"params": params, "lr": torch.tensor(0.1, dtype=torch.float64)}])
    scheduler = schedx_lr.LambdaLR(optimizer, lambda epoch: 0.1 ** (epoch // 30))
    scheduler.step()
    scheduler.step()
    assert scheduler._in_tensor_mode


# -- construction costs a bounded amount, whatever the function computes -----------------------------


def doubling(epoch):
    value = epoch * 1e-12
    for _ in range(40):
        value = value + value  # 40 nodes, 2**40 operations once each use is emitted
    return value


def deeply_nested(epoch):
    value = 0.0
    for _ in range(300):
        value = value + epoch * 0.001
    return value


@pytest.mark.parametrize("lr_lambda", [doubling, deeply_nested], ids=["doubling", "deeply-nested"])
def test_a_lambda_too_large_for_the_engine_is_refused_before_its_operations_are_emitted(
    monkeypatch, lr_lambda
):
    emitted = []
    real_push = _expression._Compiler.push

    def counting_push(self, *args, **kwargs):
        emitted.append(None)
        if len(emitted) > 10 * _expression._MAX_INSTRUCTIONS:
            raise RuntimeError("emitting without end")
        return real_push(self, *args, **kwargs)

    monkeypatch.setattr(_expression._Compiler, "push", counting_push)
    assert_as_torch(lambda: lr_lambda, steps=5)
    assert len(emitted) <= _expression._MAX_INSTRUCTIONS


class Setting:
    """An object whose equality and spelling are its own."""

    def __eq__(self, other):
        return other == 3

    __hash__ = object.__hash__

    def __format__(self, spec):
        return "short"


SETTING = Setting()


@pytest.mark.parametrize(
    "lr_lambda",
    [
        lambda epoch: 0.5 if SETTING == 3 else 0.9**epoch,
        lambda epoch: 0.5 if len(f"{SETTING}") > 10 else 0.9**epoch,
        lambda epoch: 0.5 if 3 in (SETTING,) else 0.9**epoch,
    ],
    ids=["equality", "format", "membership"],
)
def test_a_lambda_comparing_or_formatting_an_object_gives_torchs_lrs(lr_lambda):
    assert_as_torch(lambda: lr_lambda, steps=5)
