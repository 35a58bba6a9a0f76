"""The boundary between the Python classes and the compiled engine."""
import copy
import math
import random

import mpmath
import pytest
import torch

import schedx
import torch.optim.swa_utils
from schedx import _C, _engine, _torch_era
from schedx._engine import Kind


@pytest.mark.parametrize("table", ["Kind", "ExprOp", "Family", "Composition", "RunMode", "CyclicMode", "PlateauCriterion"])
def test_an_engine_enumeration_numbers_its_members_from_zero_without_gaps(table):
    assert sorted(_engine.CONSTANTS[table].values()) == list(range(len(_engine.CONSTANTS[table])))


def test_the_schedule_compiler_emits_exactly_the_engines_operations():
    from schedx.schedules import _expression as schedules

    emitted = set(schedules._BINARY) | set(schedules._UNARY)
    emitted |= {"const_float", "const_int", "step", "base_lr", "jump_if_false", "jump"}
    assert emitted == set(schedules._OPCODES)


def test_cyclic_lrs_modes_are_torchs_mode_names():
    assert set(_engine.CYCLIC_MODES) == {"triangular", "triangular2", "exp_range"}
    assert sorted(_engine.CYCLIC_MODES.values()) == sorted(_engine.CONSTANTS["CyclicMode"].values())


def test_every_step_plan_class_names_settings_it_has():
    for cls in (
        schedx.StepLR,
        schedx.ConstantLR,
        schedx.LinearLR,
        schedx.ExponentialLR,
        schedx.PolynomialLR,
        schedx.CosineAnnealingLR,
        schedx.CosineAnnealingWarmRestarts,
    ):
        assert cls.__name__ in Kind.__members__
        assert 1 <= len(cls._settings) <= 3


def _sgd(n_groups, lr=0.1):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(n_groups)]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p in params], momentum=0.9)


def _advance_counters(scheduler):
    """The counters of a scheduler's second step, as its Python step sets them before get_lr()."""
    scheduler.last_epoch, scheduler._step_count = 1, 2


def test_engine_hands_back_a_step_it_cannot_compute_exactly():
    optimizer = _sgd(3)
    scheduler = schedx.ExponentialLR(optimizer, gamma=0.5)
    optimizer.param_groups[1]["lr"] = torch.tensor(0.1)
    _advance_counters(scheduler)
    assert _engine.plan_get_lr(scheduler) is None
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_a_step_handed_back_leaves_each_groups_lr_as_it_was_bit_for_bit():
    optimizer = _sgd(4)
    scheduler = schedx.ExponentialLR(optimizer, gamma=0.5)
    int_lr = 10**6
    before = [0.1, -0.0, int_lr, torch.tensor(0.1)]
    for group, lr in zip(optimizer.param_groups, before):
        group["lr"] = lr
    groups = optimizer.param_groups
    _advance_counters(scheduler)
    assert _engine.plan_get_lr(scheduler) is None
    after = [group["lr"] for group in groups]
    assert [math.copysign(1.0, lr) for lr in after[:2]] == [1.0, -1.0]
    assert after[:2] == before[:2] and all(type(lr) is float for lr in after[:2])
    assert after[2] is int_lr and after[3] is before[3]


def test_engine_rejects_an_unknown_kind_with_a_value_error():
    with pytest.raises(ValueError, match="unknown scheduler kind"):
        _engine.register_plain_class(type("Unknown", (), {}), _engine.Family.Plan, 99, (), None, ())


def test_engine_rejects_an_unknown_family_with_a_value_error():
    with pytest.raises(ValueError, match="unknown family"):
        _engine.register_plain_class(type("Unknown", (), {}), len(_engine.Family), None, (), None, ())


def test_engine_rejects_a_wrong_argument_count_with_a_type_error():
    with pytest.raises(TypeError, match="takes 6 arguments"):
        _engine.register_plain_class(schedx.StepLR, _engine.Family.Plan)


def test_engine_reads_settings_edited_between_steps():
    reference, fused = _sgd(2), _sgd(2)
    torch_scheduler = torch.optim.lr_scheduler.ExponentialLR(reference, gamma=0.5)
    schedx_scheduler = schedx.ExponentialLR(fused, gamma=0.5)
    for scheduler in (torch_scheduler, schedx_scheduler):
        scheduler.step()
        scheduler.gamma = 0.25
        scheduler.step()
    assert [g["lr"] for g in fused.param_groups] == [g["lr"] for g in reference.param_groups]


def test_cyclic_scale_fn_error_propagates_where_torchs_does():
    def run(L):
        optimizer, calls = _sgd(2), []

        def scale_fn(x):
            calls.append(x)
            if len(calls) == 5:
                raise ArithmeticError("boom")
            return 1.0

        scheduler = L.CyclicLR(optimizer, 0.01, 0.1, step_size_up=4, scale_fn=scale_fn)
        with pytest.raises(ArithmeticError, match="boom"):
            for _ in range(3):
                scheduler.step()
        return calls, [dict(g) for g in optimizer.param_groups]

    assert run(schedx) == run(torch.optim.lr_scheduler)


def test_zero_t_max_raises_torchs_zero_division_error():
    optimizer = _sgd(1)
    scheduler = schedx.CosineAnnealingLR(optimizer, T_max=0)
    with pytest.raises(ZeroDivisionError):
        scheduler.step()
    assert not math.isnan(optimizer.param_groups[0]["lr"])



def _python_step_calls(monkeypatch, *classes) -> list:
    """The schedulers whose `_python_step` runs, for each class given (the engine's step falls back
    to it for anything it does not run whole)."""
    calls = []
    for cls in classes:
        real = cls.__dict__["_python_step"]
        monkeypatch.setattr(cls, "_python_step", lambda self, *a, _real=real: calls.append(self) or _real(self, *a))
    return calls


def _chain_and_calls(monkeypatch, children):
    """A ChainedScheduler over fresh float-LR groups, and the list of chain_get_lr calls it makes."""
    calls = []
    real = _engine.chain_get_lr
    monkeypatch.setattr(_engine, "chain_get_lr", lambda *a: calls.append(a) or real(*a))
    opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 * (k + 1)}
                           for k in range(4)])
    return schedx.ChainedScheduler([make(opt) for make in children]), calls


def _torch_twin_lrs(make, steps):
    """The LRs after each of `steps` steps of `make(torch's lr_scheduler module, optimizer)`."""
    opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 * (k + 1)}
                           for k in range(4)])
    scheduler = make(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(steps):
        opt.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return lrs


def _schedx_lrs(scheduler, steps):
    lrs = []
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    return lrs


def _four_groups(tensor_lrs: bool = False):
    """SGD over four groups with distinct LRs: floats, or one-element float64 tensors."""
    lrs = [0.1 * (k + 1) for k in range(4)]
    if tensor_lrs:
        lrs = [torch.tensor(lr, dtype=torch.float64) for lr in lrs]
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs])


# Classes that step in Python where the installed torch's rule is not the engine's (schedx/_torch_era.py).
TESTS_THE_EPOCH_BEFORE_2_8 = pytest.mark.skipif(
    not _torch_era.HAS_IS_INITIAL, reason="this torch's get_lr() tests the epoch: the step runs in Python"
)
RESTARTS_BY_SUBTRACTION_BEFORE_2_8 = pytest.mark.skipif(
    not _torch_era.RESTARTS_BY_MODULO, reason="this torch restarts with T_cur - T_i: the step runs in Python"
)

# Schedulers of schedx's own classes, one of each kind of plain step the engine runs whole.
PLAIN_STEP_CASES = pytest.mark.parametrize("make", [
    lambda L, o: L.StepLR(o, step_size=3, gamma=0.5),
    lambda L, o: L.MultiStepLR(o, milestones=[2, 5, 5], gamma=0.5),
    pytest.param(lambda L, o: L.CosineAnnealingLR(o, T_max=6, eta_min=0.01), marks=TESTS_THE_EPOCH_BEFORE_2_8),
    lambda L, o: L.ChainedScheduler([L.ConstantLR(o, factor=0.5, total_iters=3), L.StepLR(o, 1, 0.9)]),
    lambda L, o: L.SequentialLR(o, [L.ConstantLR(o, 0.1, total_iters=3), L.StepLR(o, 1, 0.9)], [3]),
    lambda L, o: L.OneCycleLR(o, max_lr=1.0, total_steps=20),
    pytest.param(lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=0.01),
                 marks=RESTARTS_BY_SUBTRACTION_BEFORE_2_8),
    lambda L, o: L.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3, mode="triangular2"),
    lambda L, o: L.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=2, mode="exp_range", gamma=0.9,
                            scale_mode="iterations"),
    lambda L, o: L.LambdaLR(o, lambda e: 0.9**e),
    pytest.param(lambda L, o: L.MultiplicativeLR(o, lambda e: 0.9 if e % 2 else 1.0),
                 marks=TESTS_THE_EPOCH_BEFORE_2_8),
    lambda L, o: (schedx.SWALR if L is schedx else torch.optim.swa_utils.SWALR)(o, swa_lr=0.05, anneal_epochs=4),
], ids=["StepLR", "MultiStepLR", "CosineAnnealingLR", "ChainedScheduler", "SequentialLR", "OneCycleLR",
        "CosineAnnealingWarmRestarts", "CyclicLR-triangular2", "CyclicLR-exp_range", "LambdaLR",
        "MultiplicativeLR", "SWALR"])


@PLAIN_STEP_CASES
def test_a_plain_step_of_schedx_own_classes_runs_whole_in_the_engine(monkeypatch, make):
    from schedx.lr_scheduler import _StepPlanScheduler

    scheduler = make(schedx, _four_groups())
    calls = _python_step_calls(monkeypatch, _StepPlanScheduler, schedx.ChainedScheduler, schedx.SequentialLR,
                               schedx.OneCycleLR, schedx.CosineAnnealingWarmRestarts, schedx.CyclicLR,
                               schedx.LambdaLR, schedx.MultiplicativeLR, schedx.SWALR)
    # The first steps (torch's warning check) and SequentialLR's milestone run in Python...
    lrs = _schedx_lrs(scheduler, 5)
    calls.clear()
    # ... and none of the steps after.
    lrs += _schedx_lrs(scheduler, 5)
    assert calls == []
    assert lrs == _torch_twin_lrs(make, 10)


def _copied_lrs(scheduler, steps):
    """The LRs after each of `steps` steps, copied: no list of the scheduler's is held between steps."""
    lrs = []
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        lrs.append(list(scheduler.get_last_lr()))
    return lrs


def _last_lr_lists(scheduler):
    """The scheduler's `_last_lr` list, and its children's."""
    return [scheduler._last_lr] + [child._last_lr for child in getattr(scheduler, "_schedulers", [])]


@PLAIN_STEP_CASES
def test_a_last_lr_list_nobody_else_holds_is_refilled_in_place_with_torchs_lrs(make):
    scheduler = make(schedx, _four_groups())
    lrs = _copied_lrs(scheduler, 5)
    identities = [id(lst) for lst in _last_lr_lists(scheduler)]
    lrs += _copied_lrs(scheduler, 5)
    assert [id(lst) for lst in _last_lr_lists(scheduler)] == identities
    assert lrs == _torch_twin_lrs(make, 10)


@PLAIN_STEP_CASES
def test_a_list_from_get_last_lr_keeps_its_lrs_through_later_steps(make):
    scheduler = make(schedx, _four_groups())
    _copied_lrs(scheduler, 5)
    held = _last_lr_lists(scheduler)
    before = [list(lst) for lst in held]
    later = _copied_lrs(scheduler, 3)
    assert [list(lst) for lst in held] == before
    assert later == _torch_twin_lrs(make, 8)[5:]


@PLAIN_STEP_CASES
def test_a_state_dict_taken_earlier_keeps_its_lrs_through_later_steps(make):
    scheduler = make(schedx, _four_groups())
    _copied_lrs(scheduler, 5)
    state = scheduler.state_dict()
    before = copy.deepcopy(state)
    _copied_lrs(scheduler, 3)
    assert state == before


def test_a_rule_that_does_not_read_base_lrs_steps_without_them_as_torchs(monkeypatch):
    from schedx.lr_scheduler import _StepPlanScheduler

    calls = _python_step_calls(monkeypatch, _StepPlanScheduler)

    def run(L):
        scheduler = L.StepLR(_four_groups(), step_size=1, gamma=0.5)
        _copied_lrs(scheduler, 2)
        del scheduler.base_lrs
        calls.clear()
        return _copied_lrs(scheduler, 3)

    lrs = run(schedx)
    assert calls == []
    assert lrs == run(torch.optim.lr_scheduler)


def test_a_step_torch_raises_on_leaves_a_refilled_last_lr_as_torch_leaves_its_own():
    sides = {}
    for L in (torch.optim.lr_scheduler, schedx):
        scheduler = L.ExponentialLR(_four_groups(), gamma=0.5)
        _copied_lrs(scheduler, 3)
        identity = id(scheduler._last_lr)
        scheduler.optimizer.param_groups[3]["lr"] = "0.1"
        with pytest.raises(TypeError, match="can't multiply sequence"):
            scheduler.step()
        sides[L] = scheduler
    reference, fused = sides.values()
    assert id(fused._last_lr) == identity and fused._last_lr == reference._last_lr
    assert [g["lr"] for g in fused.optimizer.param_groups] == [g["lr"] for g in reference.optimizer.param_groups]


def _plateau_lrs(scheduler, metrics):
    lrs = []
    for metric in metrics:
        scheduler.optimizer.step()
        scheduler.step(metric)
        lrs.append(scheduler.get_last_lr())
    return lrs


PLATEAU_METRICS = [1.0, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 2, 2, 2]


def test_a_plateau_step_with_a_float_or_int_metric_runs_whole_in_the_engine(monkeypatch):
    def make(L):
        return L.ReduceLROnPlateau(_four_groups(), factor=0.5, patience=1, cooldown=1, threshold=0.05)

    scheduler = make(schedx)
    calls = _python_step_calls(monkeypatch, schedx.ReduceLROnPlateau)
    lrs = _plateau_lrs(scheduler, PLATEAU_METRICS)
    assert calls == []
    torch_scheduler = make(torch.optim.lr_scheduler)
    assert lrs == _plateau_lrs(torch_scheduler, PLATEAU_METRICS)
    assert scheduler.state_dict() == torch_scheduler.state_dict()


def test_a_plateau_last_lr_nobody_else_holds_is_refilled_in_place_with_torchs_lrs():
    def make(L):
        return L.ReduceLROnPlateau(_four_groups(), factor=0.5, patience=1, cooldown=1, threshold=0.05)

    scheduler, torch_scheduler = make(schedx), make(torch.optim.lr_scheduler)
    scheduler.step(PLATEAU_METRICS[0])
    identity = id(scheduler._last_lr)
    lrs = []
    for metric in PLATEAU_METRICS[1:]:
        scheduler.step(metric)
        lrs.append(list(scheduler.get_last_lr()))
    assert id(scheduler._last_lr) == identity
    assert lrs == _plateau_lrs(torch_scheduler, PLATEAU_METRICS)[1:]


def test_a_plateau_step_with_a_tensor_metric_runs_in_python_as_torchs(monkeypatch):
    def make(L):
        return L.ReduceLROnPlateau(_four_groups(), mode="max", factor=0.5, patience=0)

    scheduler = make(schedx)
    calls = _python_step_calls(monkeypatch, schedx.ReduceLROnPlateau)
    metrics = [torch.tensor(m) for m in (1.0, 0.5, 0.25)]
    lrs = _plateau_lrs(scheduler, metrics)
    assert calls == [scheduler] * 3
    assert lrs == _plateau_lrs(make(torch.optim.lr_scheduler), metrics)


@pytest.mark.parametrize("cls, make", [
    (schedx.CyclicLR,
     lambda L, o: L.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3, scale_fn=lambda x: 1 / x)),
    (schedx.LambdaLR, lambda L, o: L.LambdaLR(o, lambda e: 0.9 ** len(str(e)))),
], ids=["CyclicLR-custom-scale_fn", "LambdaLR-untraceable"])
def test_a_step_with_python_callables_runs_python_with_torchs_lrs(monkeypatch, cls, make):
    scheduler = make(schedx, _four_groups())
    calls = _python_step_calls(monkeypatch, cls)
    lrs = _schedx_lrs(scheduler, 10)
    assert calls == [scheduler] * 10
    assert lrs == _torch_twin_lrs(make, 10)


def test_a_rebound_global_is_seen_by_the_engine_step(monkeypatch):
    global _DECAY
    _DECAY = 0.5
    scheduler = schedx.LambdaLR(_four_groups(), lambda e: _DECAY**e)
    _schedx_lrs(scheduler, 3)
    calls = _python_step_calls(monkeypatch, schedx.LambdaLR)
    _schedx_lrs(scheduler, 2)
    assert calls == []  # traced, guard held: the engine's step
    _DECAY = 0.25
    scheduler.optimizer.step()
    scheduler.step()
    assert calls == [scheduler]  # the guard broke: Python's step traced again
    assert scheduler.get_last_lr() == [0.1 * (k + 1) * 0.25**6 for k in range(4)]


def test_a_user_subclass_steps_through_python_with_torchs_lrs(monkeypatch):
    class MyStepLR(schedx.StepLR):
        pass

    calls = _python_step_calls(monkeypatch, schedx.lr_scheduler._StepPlanScheduler)
    scheduler = MyStepLR(_four_groups(), step_size=2, gamma=0.5)
    lrs = _schedx_lrs(scheduler, 6)
    assert calls.count(scheduler) == 7  # construction's step and every step after
    assert lrs == _torch_twin_lrs(lambda L, o: L.StepLR(o, step_size=2, gamma=0.5), 6)


@pytest.mark.parametrize("name", ["StepLR", "ChainedScheduler", "SequentialLR", "ReduceLROnPlateau", "OneCycleLR",
                                  "CosineAnnealingWarmRestarts"])
def test_a_scheduler_whose_optimizer_was_deleted_raises_torchs_attribute_error(name):
    make = {
        "StepLR": lambda L, o: L.StepLR(o, step_size=2),
        "ChainedScheduler": lambda L, o: L.ChainedScheduler([L.ExponentialLR(o, 0.9)]),
        "SequentialLR": lambda L, o: L.SequentialLR(o, [L.ExponentialLR(o, 0.9), L.StepLR(o, 2)], [5]),
        "ReduceLROnPlateau": lambda L, o: L.ReduceLROnPlateau(o),
        "OneCycleLR": lambda L, o: L.OneCycleLR(o, max_lr=1.0, total_steps=10),
        "CosineAnnealingWarmRestarts": lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=3),
    }[name]
    errors = []
    for lib in (torch.optim.lr_scheduler, schedx):
        scheduler = make(lib, _four_groups())
        for _ in range(2):
            scheduler.step(*([1.0] if name == "ReduceLROnPlateau" else []))
        target = scheduler._schedulers[0] if name in ("ChainedScheduler", "SequentialLR") else scheduler
        del target.optimizer
        with pytest.raises(AttributeError) as error:
            scheduler.step(*([1.0] if name == "ReduceLROnPlateau" else []))
        errors.append(str(error.value))
    assert errors[0] == errors[1]


def test_multistep_milestones_replaced_by_a_dict_step_as_torchs():
    def make(L, o):
        scheduler = L.MultiStepLR(o, milestones=[2], gamma=0.5)
        scheduler.milestones = {3: 2, 5: 1}
        return scheduler

    assert _schedx_lrs(make(schedx, _four_groups()), 7) == _torch_twin_lrs(make, 7)


@pytest.mark.skipif(not _torch_era.HAS_IS_INITIAL, reason="the engine reads a child's `_is_initial`, "
                    "which torch has from 2.8: before, such children step one by one")
def test_a_chain_of_user_subclass_children_is_one_engine_pass(monkeypatch):
    class MyExponentialLR(schedx.ExponentialLR):
        pass

    chain, calls = _chain_and_calls(monkeypatch, [
        lambda o: MyExponentialLR(o, gamma=0.9),
        lambda o: schedx.CosineAnnealingLR(o, T_max=10),
    ])
    chain.step()  # the children's first steps warn one by one, as torch's do
    calls.clear()
    for _ in range(5):
        chain.step()
    assert len(calls) == 5


@pytest.mark.parametrize("lrs", ["float", "tensor"])
@pytest.mark.parametrize("twice", ["StepLR", "ExponentialLR"])
def test_a_chain_listing_a_child_twice_steps_it_twice_as_torchs(twice, lrs):
    def run(lib):
        opt = _four_groups(tensor_lrs=lrs == "tensor")
        repeated = lib.StepLR(opt, step_size=2, gamma=0.5) if twice == "StepLR" else lib.ExponentialLR(opt, 0.9)
        chain = lib.ChainedScheduler([repeated, lib.LinearLR(opt, 0.5, total_iters=3), repeated])
        seen = []
        for _ in range(7):
            opt.step()
            chain.step()
            seen.append((_values([g["lr"] for g in opt.param_groups]), repeated.last_epoch, repeated._step_count,
                         _values(repeated.get_last_lr()), _values(chain.get_last_lr())))
        return seen

    assert run(schedx) == run(torch.optim.lr_scheduler)


@pytest.mark.parametrize("lrs", ["float", "tensor"])
def test_a_sequence_listing_a_child_twice_steps_as_torchs(lrs):
    def run(lib):
        opt = _four_groups(tensor_lrs=lrs == "tensor")
        repeated = lib.StepLR(opt, step_size=2, gamma=0.5)
        sequence = lib.SequentialLR(opt, [repeated, lib.ExponentialLR(opt, 0.9), repeated], milestones=[3, 5])
        seen = []
        for _ in range(9):
            opt.step()
            sequence.step()
            seen.append((_values([g["lr"] for g in opt.param_groups]), repeated.last_epoch,
                         repeated._step_count, _values(sequence.get_last_lr())))
        return seen

    assert run(schedx) == run(torch.optim.lr_scheduler)


def _values(lrs):
    """LRs as Python values with their types: a tensor's value and dtype."""
    return [(lr.item(), lr.dtype) if isinstance(lr, torch.Tensor) else (lr, type(lr)) for lr in lrs]


def test_a_chain_whose_child_was_given_another_optimizer_steps_as_torchs():
    results = []
    for lib in (torch.optim.lr_scheduler, schedx):
        optimizer, other = _four_groups(), _four_groups()
        chain = lib.ChainedScheduler([lib.ExponentialLR(optimizer, 0.9), lib.StepLR(optimizer, 2, 0.5)])
        chain.step()
        chain._schedulers[0].optimizer = other
        for _ in range(4):
            chain.step()
        results.append((chain.get_last_lr(), [g["lr"] for g in optimizer.param_groups],
                        [g["lr"] for g in other.param_groups]))
    assert results[0] == results[1]


def test_a_chain_with_a_warm_restarts_child_steps_child_by_child(monkeypatch):
    chain, calls = _chain_and_calls(monkeypatch, [
        lambda o: schedx.ExponentialLR(o, gamma=0.9),
        lambda o: schedx.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2),
    ])
    lrs = _schedx_lrs(chain, 8)
    assert calls == []
    assert lrs == _torch_twin_lrs(lambda L, o: L.ChainedScheduler(
        [L.ExponentialLR(o, gamma=0.9), L.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2)]), 8)


def test_a_chain_with_a_lambda_child_steps_child_by_child(monkeypatch):
    chain, calls = _chain_and_calls(monkeypatch, [
        lambda o: schedx.ExponentialLR(o, gamma=0.9),
        lambda o: schedx.LambdaLR(o, lambda e: 0.5),
    ])
    for _ in range(5):
        chain.step()
    assert calls == []


def _schedule_cos_arguments() -> list[float]:
    """The arguments the cosine rules give cos: pi * t / T for many periods, steps past the end."""
    args = []
    for period in [*range(1, 120), 1_000, 10_007, 100_000]:
        for t in range(-1, 3 * period + 2, max(1, period // 60)):
            args += [math.pi * t / period, math.pi * (t - 1) / period]
    return args


def _correctly_rounded_cos(x: float) -> float:
    mpmath.mp.prec = 200
    return float(mpmath.cos(mpmath.mpf(x)))


def test_the_device_cos_is_correctly_rounded():
    # The CUDA kernel's cos (csrc/dd_math.h), run on the host.
    rng = random.Random(7)
    args = [rng.uniform(-1e6, 1e6) for _ in range(2_000)] + _schedule_cos_arguments()[::7]
    for x in args:
        assert _C.device_cos(x) == _correctly_rounded_cos(x), x


def _correctly_rounded_pow(x: float, y: float) -> float:
    mpmath.mp.prec = 300
    return float(mpmath.power(mpmath.mpf(x), mpmath.mpf(y)))


def _schedule_pow_arguments() -> list[tuple[float, float]]:
    """What the rules raise to a power: gammas to milestone counts and iterations (MultiStepLR,
    StepLR's closed form, CyclicLR's exp_range), PolynomialLR's step ratios to real powers."""
    rng = random.Random(11)
    args = []
    for _ in range(1_500):
        args.append((rng.uniform(0.5, 0.9999), float(rng.randint(1, 5_000))))
        total = rng.randint(2, 2_000)
        epoch = rng.randint(1, total - 1)
        ratio = (1.0 - epoch / total) / (1.0 - (epoch - 1) / total)
        args.append((ratio, rng.choice([0.5, 0.9, 1.0, 1.7, 2.0, 3.3])))
    return args


def test_the_device_pow_is_correctly_rounded():
    for x, y in _schedule_pow_arguments():
        assert _C.device_pow(x, y) == _correctly_rounded_pow(x, y), (x, y)


def test_the_device_cos_differs_from_the_c_library_only_where_that_misrounds():
    args = _schedule_cos_arguments()
    differing = [x for x in args if _C.device_cos(x) != math.cos(x)]
    assert all(math.cos(x) != _correctly_rounded_cos(x) for x in differing)
    assert len(differing) < len(args) // 200


def test_a_one_cycle_schedule_with_more_phases_than_torch_builds_steps_as_torchs():
    # A state dict can carry any phase list; the engine takes torch's two or three and leaves the rest
    # to torch's code, on the host as on the device.
    def lrs(cls):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        scheduler = cls(optimizer, max_lr=0.5, total_steps=40, three_phase=True)
        last = dict(scheduler._schedule_phases[-1])
        scheduler._schedule_phases[-1] = {**last, "end_step": 30.0}
        scheduler._schedule_phases.append({**last, "end_step": 39.0})
        out = []
        for _ in range(39):
            optimizer.step()
            scheduler.step()
            out.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]))
        return out

    assert lrs(schedx.OneCycleLR) == lrs(torch.optim.lr_scheduler.OneCycleLR)


# The Python layer's tensor-mode stages, held against the fields, rows and state the program reads
# (csrc/device/program.h's unpack_params, `row` and `state`): the layouts both sides must keep alike.
ROW, STATE = _engine.CONSTANTS["Row"], _engine.CONSTANTS["State"]


NEEDS_LRS_FILLED_IN_PLACE = pytest.mark.skipif(
    not _torch_era.TENSOR_LRS_FILLED_IN_PLACE,
    reason="this torch's step replaces the LR tensors: this class has no tensor-mode program",
)


@NEEDS_LRS_FILLED_IN_PLACE
def test_a_plan_stage_gives_the_program_its_settings_and_t_mult():
    scheduler = schedx.CosineAnnealingWarmRestarts(_sgd(2), T_0=5, T_mult=2, eta_min=0.001)
    stage = scheduler._tensor_stage()
    params = _C.stage_params(stage.family, stage.params)
    assert params["settings"][2] == scheduler.eta_min and params["t_mult"] == scheduler.T_mult
    assert stage.rows[ROW["BASE_LR"]] is scheduler.base_lrs
    assert (stage.state_names[STATE["WARM_T_CUR"]], stage.state_names[STATE["WARM_T_I"]]) == ("T_cur", "T_i")


@pytest.mark.parametrize("three_phase", [False, True])
def test_a_one_cycle_stage_names_each_phases_end_and_rows_as_torchs_phases(three_phase):
    optimizer = _sgd(2)
    scheduler = schedx.OneCycleLR(optimizer, max_lr=1.0, total_steps=100, three_phase=three_phase)
    stage = scheduler._tensor_stage()
    params = _C.stage_params(stage.family, stage.params)
    phases = scheduler._schedule_phases
    assert params["total_steps"] == scheduler.total_steps and params["n_phases"] == len(phases)
    for k, phase in enumerate(phases):
        assert params["end_step"][k] == phase["end_step"]
        for key in ("start_lr", "end_lr", "start_momentum", "end_momentum"):
            row = stage.rows[params[key][k]]
            assert row == [group[phase[key]] for group in optimizer.param_groups]


def test_a_cyclic_stage_gives_the_program_its_cycle_mode_and_rows():
    scheduler = schedx.CyclicLR(_sgd(2), 0.01, 0.1, step_size_up=7, mode="exp_range", gamma=0.99)
    stage = scheduler._tensor_stage()
    params = _C.stage_params(stage.family, stage.params)
    assert (params["total_size"], params["step_ratio"]) == (scheduler.total_size, scheduler.step_ratio)
    assert (params["mode"], params["gamma"]) == (_engine.CYCLIC_MODES["exp_range"], 0.99)
    assert stage.rows[ROW["CYCLIC_BASE_LR"]] is scheduler.base_lrs
    assert stage.rows[ROW["CYCLIC_MAX_LR"]] is scheduler.max_lrs
    assert stage.rows[ROW["CYCLIC_BASE_MOMENTUM"]] is scheduler.base_momentums
    assert stage.rows[ROW["CYCLIC_MAX_MOMENTUM"]] is scheduler.max_momentums


@NEEDS_LRS_FILLED_IN_PLACE
def test_a_plateau_stage_gives_the_program_its_settings_rows_and_state():
    scheduler = schedx.ReduceLROnPlateau(_sgd(2), mode="max", factor=0.3, patience=4, threshold=0.01,
                                         threshold_mode="abs", cooldown=3, eps=1e-9)
    stage = scheduler._tensor_stage()
    params = _C.stage_params(stage.family, stage.params)
    assert params == {
        "criterion": _engine.CONSTANTS["PlateauCriterion"]["MaxAbs"], "threshold": 0.01, "patience": 4,
        "cooldown": 3, "factor": 0.3, "eps": 1e-9,
    }
    assert stage.rows[ROW["PLATEAU_MIN_LR"]] is scheduler.min_lrs
    names = stage.state_names
    assert (names[STATE["PLATEAU_BEST"]], names[STATE["PLATEAU_BAD"]],
            names[STATE["PLATEAU_COOLDOWN_COUNTER"]]) == ("best", "num_bad_epochs", "cooldown_counter")


def test_a_schedule_stage_gives_the_program_each_groups_base_lr_and_schedule():
    optimizer = _sgd(3)
    decay, halve = (lambda e: 0.9 ** e), (lambda e: 0.5 ** e)
    scheduler = schedx.LambdaLR(optimizer, [decay, halve, decay])
    stage = scheduler._tensor_stage()
    assert stage.rows[ROW["SCHEDULE_BASE_LR"]] is scheduler.base_lrs
    indices = stage.rows[ROW["SCHEDULE_INDEX"]]
    assert len(stage.schedules) == 2 and indices[0] != indices[1] and indices[0] == indices[2]
