"""With tensor LRs, schedx raises torch's exceptions (type and message) where torch raises them: at
construction, and at the step whose arithmetic fails, after which it carries on as torch does. A CPU
step that its program cannot compute runs torch's code instead (the program writes nothing then)."""
from __future__ import annotations

import math

import pytest
import torch

from tensor_cases import SCHEDX, TORCH

pytestmark = pytest.mark.filterwarnings("ignore")


def make_optimizer(with_initial_lr: bool = False) -> torch.optim.SGD:
    """Two groups with float64 tensor LRs (and `initial_lr`, for a scheduler resumed with last_epoch)."""
    groups = []
    for k in range(2):
        lr = 0.1 * (k + 1)
        group = {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": torch.tensor(lr, dtype=torch.float64)}
        if with_initial_lr:
            group["initial_lr"] = torch.tensor(lr, dtype=torch.float64)
        groups.append(group)
    return torch.optim.SGD(groups, lr=0.1)


def outcome(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the exception is what is compared
        return type(e), str(e)
    return None


def lrs_of(optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


def history(build, steps: int, step_args=lambda i: (), with_initial_lr=False) -> list:
    """What construction and each of `steps` steps gave: the exception (type, message) or None, and
    the LRs after it. A raising step does not stop the run: the training loop carries on."""
    optimizer = make_optimizer(with_initial_lr)
    made = []
    error = outcome(lambda: made.append(build(optimizer)))
    out = [(error, lrs_of(optimizer))]
    if error is not None:
        return out
    scheduler = made[0]
    for i in range(steps):
        out.append((outcome(lambda: scheduler.step(*step_args(i))), lrs_of(optimizer)))
    return out


def assert_as_torch(build, steps, **kwargs) -> list:
    expected = history(lambda o: build(TORCH, o), steps, **kwargs)
    got = history(lambda o: build(SCHEDX, o), steps, **kwargs)
    assert got == expected
    return expected


def raised_somewhere(expected) -> bool:
    return any(error is not None for error, _ in expected)


def one_cycle(total_steps, **kwargs):
    return lambda L, o: L.OneCycleLR(o, max_lr=0.5, total_steps=total_steps, cycle_momentum=False, **kwargs)


CONSTRUCTION = {
    "LambdaLR-1/e": lambda L, o: L.LambdaLR(o, lambda e: 1 / e),
    "LambdaLR-log-domain": lambda L, o: L.LambdaLR(o, lambda e: math.log(e)),
    "LambdaLR-resumed": lambda L, o: L.LambdaLR(o, lambda e: 1 / (e - 4), last_epoch=3),
    "StepLR-step_size-0-resumed": lambda L, o: L.StepLR(o, step_size=0, last_epoch=3),
    "ConstantLR-factor-0-resumed": lambda L, o: L.ConstantLR(o, factor=0.0, total_iters=4, last_epoch=3),
    "MultiStepLR-gamma-overflow-resumed": lambda L, o: L.MultiStepLR(o, [4, 4, 4], gamma=1e200, last_epoch=3),
    "OneCycleLR-resumed-past-total_steps": lambda L, o: L.OneCycleLR(
        o, max_lr=0.5, total_steps=3, cycle_momentum=False, last_epoch=3
    ),
}


@pytest.mark.parametrize("name", CONSTRUCTION)
def test_construction_raises_torchs_error(name):
    expected = assert_as_torch(CONSTRUCTION[name], 3, with_initial_lr=True)
    assert expected[0][0] is not None


# Errors at one step only: torch raises there, and the next steps compute again.
ONE_STEP = {
    "LambdaLR-1/(e-3)": (lambda L, o: L.LambdaLR(o, lambda e: 1 / (e - 3)), 6),
    "MultiplicativeLR-1/(e-2)": (lambda L, o: L.MultiplicativeLR(o, lambda e: 1 / (e - 2)), 5),
    "ConstantLR-factor-0": (lambda L, o: L.ConstantLR(o, factor=0.0, total_iters=2), 4),
    "MultiStepLR-gamma-overflow": (lambda L, o: L.MultiStepLR(o, [1, 1, 1, 2], gamma=1e200), 4),
    "PolynomialLR-negative-power": (lambda L, o: L.PolynomialLR(o, total_iters=3, power=-1.0), 5),
    "SequentialLR-child-raising": (
        lambda L, o: L.SequentialLR(o, [L.LambdaLR(o, lambda e: 1 / (e - 2)), L.ExponentialLR(o, 0.9)], milestones=[4]),
        6,
    ),
    "SequentialLR-past-a-OneCycleLR": (
        lambda L, o: L.SequentialLR(o, [one_cycle(3)(L, o), L.ExponentialLR(o, 0.9)], milestones=[5]),
        7,
    ),
    "ChainedScheduler-child-raising": (
        lambda L, o: L.ChainedScheduler([L.ExponentialLR(o, 0.9), L.LambdaLR(o, lambda e: 1 / (e - 2))]),
        5,
    ),
}


@pytest.mark.parametrize("name", ONE_STEP)
def test_a_step_raises_torchs_error_and_the_next_steps_compute_again(name):
    build, steps = ONE_STEP[name]
    expected = assert_as_torch(build, steps)
    assert raised_somewhere(expected) and expected[-1][0] is None


# Errors at every step from one on.
FROM_A_STEP = {
    "OneCycleLR-past-total_steps": (one_cycle(3), 7),
    "OneCycleLR-total_steps-1": (one_cycle(1), 3),
    "OneCycleLR-three-phase-past-total_steps": (one_cycle(2, three_phase=True), 3),
    "OneCycleLR-pct_start-0-past-total_steps": (one_cycle(5, pct_start=0.0), 7),
    "ChainedScheduler-past-a-OneCycleLR": (
        lambda L, o: L.ChainedScheduler([L.ExponentialLR(o, 0.9), one_cycle(3)(L, o)]),
        6,
    ),
    "StepLR-step_size-0": (lambda L, o: L.StepLR(o, step_size=0), 3),
    "CosineAnnealingLR-T_max-0": (lambda L, o: L.CosineAnnealingLR(o, T_max=0), 3),
    "LambdaLR-overflow": (lambda L, o: L.LambdaLR(o, lambda e: 10.0 ** (e * 100)), 6),
    "LambdaLR-log-domain": (lambda L, o: L.LambdaLR(o, lambda e: math.log(3 - e)), 6),
    "LambdaLR-sqrt-domain": (lambda L, o: L.LambdaLR(o, lambda e: math.sqrt(2 - e)), 5),
    "CyclicLR-exp_range-overflow": (
        lambda L, o: L.CyclicLR(o, 0.01, 0.1, step_size_up=1000, mode="exp_range", gamma=1e10, cycle_momentum=False),
        35,
    ),
}


@pytest.mark.parametrize("name", FROM_A_STEP)
def test_every_step_from_the_failing_one_raises_torchs_error(name):
    build, steps = FROM_A_STEP[name]
    expected = assert_as_torch(build, steps)
    assert expected[-1][0] is not None


def test_a_scheduler_that_raised_re_enters_tensor_mode_once_steps_compute_again():
    optimizer = make_optimizer()
    scheduler = SCHEDX.LambdaLR(optimizer, lambda e: 1 / (e - 3))
    assert [outcome(scheduler.step) for _ in range(4)] == [None, None, (ZeroDivisionError, "division by zero"), None]
    assert "_tensor_program" in scheduler.__dict__


@pytest.mark.parametrize(
    "metrics",
    [
        [1.0, "x", None, 0.5],
        [1.0, 1j, 2.0],
        [torch.tensor(1.0), torch.ones(2), torch.tensor(3.0)],
        [torch.tensor(3), torch.tensor(2), torch.tensor(3)],
        [1.0, float("nan"), 2.0, 0.5],
    ],
    ids=["str-None", "complex", "two-element-tensor", "int-tensors", "nan"],
)
def test_plateau_reads_a_metric_as_torch_does(metrics):
    assert_as_torch(
        lambda L, o: L.ReduceLROnPlateau(o, patience=0), len(metrics), step_args=lambda i: (metrics[i],)
    )


def test_a_step_inside_a_compiled_graph_raises_torchs_error_at_every_step_from_the_failing_one():
    # A graph cannot run torch's code for the failing step: the program stops and says so at once.
    optimizer = make_optimizer()
    scheduler = SCHEDX.OneCycleLR(optimizer, max_lr=0.5, total_steps=5, cycle_momentum=False)
    scheduler.step()  # torch's own first step (before torch 2.9, whole)
    scheduler.step()  # enters tensor mode
    torch._dynamo.reset()
    compiled = torch.compile(scheduler.step, backend="aot_eager")
    for _ in range(3):
        compiled()
    stopped = lrs_of(optimizer)
    for attempt in range(2):
        with pytest.raises(ValueError, match="Tried to step 6 times. The specified number of total steps is 5"):
            compiled()
        assert lrs_of(optimizer) == stopped
    torch._dynamo.reset()
