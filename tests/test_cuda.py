"""Tensor LRs on a CUDA GPU: one kernel launch per step, the step counter on the device, capturable in a
CUDA graph. Skipped (and reported as skipped) where no GPU is visible; where one is, a missing CUDA
module is a failure, not a skip."""
from __future__ import annotations

import struct

import pytest
import torch

from tensor_cases import CASES, SCHEDX, STEPS, captured, float_path, make_optimizer, metric_at, step

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible"),
]

CASE_IDS = [c.name for c in CASES]
DTYPES = [torch.float32, torch.float64]
MAX_ULPS = 4


def ulps(a: float, b: float) -> int:
    """Distance between two doubles in units in the last place."""
    def ordered(x):
        (i,) = struct.unpack("<q", struct.pack("<d", x))
        return i if i >= 0 else -(i & 0x7FFFFFFFFFFFFFFF)

    return abs(ordered(a) - ordered(b))


def program_of(scheduler):
    return scheduler.__dict__["_tensor_program"]


def test_the_cuda_module_is_built():
    from schedx import _tensor_mode

    assert _tensor_mode._cuda is not None, "a GPU is visible but schedx._cuda was not built"


def cpu_program_path(case, dtype) -> list[list[float]]:
    """The CPU program's double values after each step (test_tensor_mode.py compares them with torch):
    the float path's for float64 LRs; for float32 ones, torch's float32 arithmetic where schedx has it."""
    opt = make_optimizer("tensor", dtype)
    sched = case.build(SCHEDX, opt)
    out = []
    for i in range(STEPS):
        step(case, sched, i)
        out.append(program_of(sched).shadow.tolist())
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_device_lrs_match_the_cpu_program_within_4_ulp_before_the_cast(case, dtype):
    expected = float_path(case, dtype) if dtype == torch.float64 else cpu_program_path(case, dtype)
    opt = make_optimizer("tensor", dtype, device="cuda")
    sched = case.build(SCHEDX, opt)
    worst = 0
    for i in range(STEPS):
        step(case, sched, i)
        shadow = program_of(sched).shadow.tolist()
        worst = max(worst, max(ulps(a, b) for a, b in zip(shadow, expected[i])))
        lrs = torch.stack([g["lr"] for g in opt.param_groups]).cpu()
        assert torch.equal(lrs, torch.tensor(shadow, dtype=torch.float64).to(dtype)), f"step {i}"
    assert worst <= MAX_ULPS, f"{worst} ulp"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_an_eager_step_does_not_synchronize(case):
    opt = make_optimizer("tensor", torch.float32, device="cuda")
    sched = case.build(SCHEDX, opt)
    step(case, sched, 0)
    step(case, sched, 1)
    assert "_tensor_program" in sched.__dict__
    metric = torch.tensor(metric_at(2), device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(2, 12):
            step(case, sched, i, metric if case.takes_metric else None)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _training(case):
    """A small model trained with AdamW(capturable=True) and tensor LRs, and its step (forward,
    backward, optimizer step, scheduler step) as a function of the metric tensor to hand the scheduler."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)).cuda()
    groups = [{"params": [p], "lr": torch.tensor(1e-3 * (k + 1), device="cuda")}
              for k, p in enumerate(model.parameters())]
    opt = torch.optim.AdamW(groups, capturable=True, lr=torch.tensor(1e-3, device="cuda"))
    sched = case.build(SCHEDX, opt)
    x = torch.randn(64, 16, device="cuda")
    y = torch.randn(64, 1, device="cuda")
    metric = torch.zeros((), device="cuda")

    def train_step():
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        metric.copy_(loss.detach())
        sched.step(metric) if case.takes_metric else sched.step()

    return opt, sched, train_step


def _lrs(opt) -> list[float]:
    return [g["lr"].item() for g in opt.param_groups]


def _captured_training(case, replays: int):
    """The training step captured once, after three warm-up steps on a side stream, and replayed:
    the LRs after each replay, and the scheduler."""
    opt, sched, train_step = _training(case)
    graph = captured(train_step, warmup=3)
    out = []
    for _ in range(replays):
        graph.replay()
        out.append(_lrs(opt))
    return out, sched


def _eager_training(case, steps: int):
    opt, _, train_step = _training(case)
    out = []
    for _ in range(steps):
        train_step()
        out.append(_lrs(opt))
    return out


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_captured_training_step_replays_the_eager_trajectory(case):
    replays = 30
    captured, _ = _captured_training(case, replays)
    # Three eager warm-up steps ran before the capture, which records the step without running it.
    eager = _eager_training(case, replays + 3)
    assert captured == eager[3:]


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("CosineAnnealingLR", "OneCycleLR-cos")], ids=str)
def test_replays_advance_the_device_step_counter(case):
    replays = 25
    _, sched = _captured_training(case, replays)
    # construction (0), three warm-up steps, then the replays (capturing runs nothing)
    assert sched.last_epoch == 3 + replays
    assert sched.state_dict()["last_epoch"] == 3 + replays


def test_a_composite_is_one_launch_per_step():
    case = next(c for c in CASES if c.name == "ChainedScheduler")
    opt = make_optimizer("tensor", torch.float32, device="cuda")
    sched = case.build(SCHEDX, opt)
    step(case, sched, 0)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step(case, sched, 1)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert [e.name for e in kernels if "program_kernel" in e.name] != []
    assert len(kernels) == 1, [e.name for e in kernels]


def test_a_construction_error_is_raised_at_construction_as_torchs():
    def build(lib):
        opt = make_optimizer("tensor", torch.float64, device="cuda")
        try:
            lib.LambdaLR(opt, lambda e: 1 / e)
        except ZeroDivisionError as e:
            return str(e)
        return None

    assert build(SCHEDX) == build(torch.optim.lr_scheduler) == "division by zero"


def test_a_failing_device_step_is_raised_at_the_next_step_and_at_every_one_after():
    # A kernel cannot raise: the step past total_steps writes nothing and leaves its status in host
    # memory, which the first step() after it has run reads (no synchronisation) and raises.
    opt = make_optimizer("tensor", torch.float64, device="cuda")
    sched = SCHEDX.OneCycleLR(opt, max_lr=0.5, total_steps=6, cycle_momentum=False)
    for _ in range(6):
        sched.step()
    before = [float(g["lr"]) for g in opt.param_groups]
    sched.step()  # step 7: past total_steps
    torch.cuda.synchronize()
    for _ in range(2):
        with pytest.raises(ValueError, match="Tried to step 7 times. The specified number of total steps is 6"):
            sched.step()
        assert [float(g["lr"]) for g in opt.param_groups] == before


def _device_lrs(case, device, steps, around_step=None) -> list[list[float]]:
    """The LRs after each of `steps` steps of `case` with tensor LRs on `device`, each step taken
    inside the context manager `around_step()` gives (a stream, another current device), if any."""
    opt = make_optimizer("tensor", torch.float64, device=device)
    sched = case.build(SCHEDX, opt)
    torch.cuda.synchronize()  # what construction queued, done before a step on another stream reads it
    out = []
    for i in range(steps):
        if around_step is None:
            step(case, sched, i)
        else:
            with around_step():
                step(case, sched, i)
        torch.cuda.synchronize()
        out.append(_lrs(opt))
    return out


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("CosineAnnealingLR", "ChainedScheduler")], ids=str)
def test_a_step_inside_torch_cuda_stream_runs_on_that_stream_with_the_same_lrs(case):
    side = torch.cuda.Stream()
    assert _device_lrs(case, "cuda", 12, lambda: torch.cuda.stream(side)) == _device_lrs(case, "cuda", 12)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("CosineAnnealingLR", "OneCycleLR-cos")], ids=str)
def test_a_step_launches_on_the_programs_device_whichever_device_is_current(case):
    on_other_device = _device_lrs(case, "cuda:1", 12, lambda: torch.cuda.device(0))
    assert on_other_device == _device_lrs(case, "cuda:1", 12)
    assert on_other_device == _device_lrs(case, "cuda:0", 12)
