"""Tensor LRs on the CPU: schedx keeps them tensors and steps them all in one engine call (tensor mode,
schedx/_tensor_mode.py), with torch's tensor path's values: the float path's for float64 tensors,
torch's float32 tensor arithmetic for float32 ones.
The same programs run on the GPU in test_cuda.py."""
from __future__ import annotations

import io

import pytest
import torch

from tensor_cases import (
    CASES,
    SCHEDX,
    STEPS,
    TORCH,
    float_path,
    lrs_of,
    make_lrs_and_momenta_tensors,
    make_optimizer,
    metric_at,
    step,
    trajectory,
)

import schedx
from schedx import _tensor_mode

CASE_IDS = [c.name for c in CASES]
# The cases schedx runs as a tensor-mode program under the installed torch.
PROGRAM_CASES = [c for c in CASES if c.has_program]


def run_tensor(case, lib, dtype=torch.float64, steps=STEPS):
    opt = make_optimizer("tensor", dtype)
    sched = case.build(lib, opt)
    return opt, sched, trajectory(case, sched, opt, steps)


def in_tensor_mode(scheduler) -> bool:
    return "_tensor_program" in scheduler.__dict__


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_float64_tensor_lrs_equal_torch_and_the_float_path(case):
    _, torch_sched, torch_lrs = run_tensor(case, TORCH)
    _, sched, lrs = run_tensor(case, SCHEDX)
    assert in_tensor_mode(sched) == case.has_program
    assert lrs == torch_lrs
    if case.has_program:
        # The program's arithmetic is the float path's. (torch's own tensor path may leave it: before
        # torch 2.10, SequentialLR's construction gives the groups their `initial_lr` tensors, which
        # the children's in-place steps then change, and with them the later children's base LRs.)
        assert lrs == float_path(case)


def float32_histories(case) -> list[list[list[tuple]]]:
    """Every group's LR after each step, torch's and schedx's, with float32 tensor LRs: its type, its
    dtype and its value (a float32 value is exact as a float). (Before torch 2.10 ReduceLROnPlateau
    replaces a tensor LR with a float.)"""
    histories = []
    for lib in (TORCH, SCHEDX):
        opt = make_optimizer("tensor", torch.float32)
        sched = case.build(lib, opt)
        history = []
        for i in range(STEPS):
            step(case, sched, i)
            history.append([(type(g["lr"]), getattr(g["lr"], "dtype", None), float(g["lr"]))
                            for g in opt.param_groups])
        histories.append(history)
    assert in_tensor_mode(sched) == case.has_program
    return histories


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_float32_tensor_lrs_equal_torchs_float32_tensor_arithmetic(case):
    expected, got = float32_histories(case)
    assert got == expected


def set_base_lrs_to_floats(step_index, scheduler):
    if step_index == 3:
        scheduler.base_lrs = [0.1 * (k + 1) for k in range(len(scheduler.base_lrs))]


# Inputs whose arithmetic in torch is not the LR's own: float32 tensor bounds (torch computes the
# bounds' arithmetic in float32), or float base LRs for float32 LRs (torch computes in double and
# rounds once).
MIXED_ARITHMETIC = {
    "CyclicLR-float32-tensor-bounds": (
        lambda L, o: L.CyclicLR(o, torch.tensor(1e-3), torch.tensor(0.1), step_size_up=3, cycle_momentum=False),
        None,
    ),
    "OneCycleLR-float32-tensor-max-lr": (
        lambda L, o: L.OneCycleLR(o, max_lr=torch.tensor(0.3), total_steps=STEPS + 5, cycle_momentum=False),
        None,
    ),
    "CosineAnnealingLR-float-base-lrs": (
        lambda L, o: L.CosineAnnealingLR(o, T_max=7, eta_min=1e-4),
        set_base_lrs_to_floats,
    ),
    "LambdaLR-float-base-lrs": (lambda L, o: L.LambdaLR(o, lambda e: 0.93**e), set_base_lrs_to_floats),
}


@pytest.mark.parametrize("name", MIXED_ARITHMETIC)
def test_float32_tensor_lrs_with_inputs_of_another_arithmetic_equal_torchs(name):
    build, between = MIXED_ARITHMETIC[name]
    histories = []
    for lib in (TORCH, SCHEDX):
        opt = make_optimizer("tensor", torch.float32)
        sched = build(lib, opt)
        history = []
        for i in range(STEPS):
            if between is not None:
                between(i, sched)
            sched.step()
            history.append(torch.stack([g["lr"] for g in opt.param_groups]).clone())
        histories.append(history)
    assert all(torch.equal(a, b) for a, b in zip(*histories))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_lr_tensors_are_updated_in_place_as_torchs_are(case):
    """In place from torch 2.10; before, CosineAnnealingWarmRestarts and ReduceLROnPlateau assign."""
    kept = []
    for lib in (TORCH, SCHEDX):
        opt = make_optimizer("tensor")
        sched = case.build(lib, opt)
        before = [g["lr"] for g in opt.param_groups]
        for i in range(12):
            step(case, sched, i)
        kept.append([g["lr"] is t for g, t in zip(opt.param_groups, before)])
    assert kept[1] == kept[0]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_counters_and_last_lr_read_the_program(case):
    _, torch_sched, _ = run_tensor(case, TORCH, steps=17)
    _, sched, _ = run_tensor(case, SCHEDX, steps=17)
    assert in_tensor_mode(sched) == case.has_program
    assert [float(v) for v in sched.get_last_lr()] == [float(v) for v in torch_sched.get_last_lr()]
    if hasattr(torch_sched, "last_epoch"):
        assert sched.last_epoch == torch_sched.last_epoch
    assert in_tensor_mode(sched) == case.has_program


def _comparable(state):
    """A state dict with tensors replaced by their values, for ==."""
    if isinstance(state, dict):
        return {k: _comparable(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_comparable(v) for v in state)
    if isinstance(state, torch.Tensor):
        return ("tensor", state.dtype, state.tolist())
    return state


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_state_dict_in_tensor_mode_is_torchs(case):
    _, torch_sched, _ = run_tensor(case, TORCH, steps=13)
    _, sched, _ = run_tensor(case, SCHEDX, steps=13)
    state = sched.state_dict()
    assert "_tensor_program" not in repr(state)
    expected = _comparable(torch_sched.state_dict())
    got = _comparable(state)
    for key in ("lr_lambdas", "_scale_fn_ref"):
        expected.pop(key, None)
        got.pop(key, None)
    assert got == expected


@pytest.mark.parametrize("case", PROGRAM_CASES, ids=str)
def test_state_dict_crosses_to_torch_and_back_mid_run(case):
    full = float_path(case, steps=30)
    # schedx (tensor mode) for 12 steps, then torch continues from its state dict.
    opt, sched, _ = run_tensor(case, SCHEDX, steps=12)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt_torch = make_optimizer("tensor")
    torch_sched = case.build(TORCH, opt_torch)
    torch_sched.load_state_dict(state)
    for g_torch, g in zip(opt_torch.param_groups, opt.param_groups):
        g_torch["lr"].fill_(g["lr"].item())
    # ... and schedx again from torch's, after 6 more steps.
    for i in range(12, 18):
        step(case, torch_sched, i)
    assert lrs_of(opt_torch) == full[17]
    opt2 = make_optimizer("tensor")
    sched2 = case.build(SCHEDX, opt2)
    sched2.load_state_dict(torch_sched.state_dict())
    for g2, g_torch in zip(opt2.param_groups, opt_torch.param_groups):
        g2["lr"].fill_(g_torch["lr"].item())
    for i in range(18, 30):
        step(case, sched2, i)
        assert lrs_of(opt2) == full[i], f"step {i}"
    assert in_tensor_mode(sched2) == case.has_program


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("ExponentialLR", "CosineAnnealingLR", "ChainedScheduler", "ReduceLROnPlateau")], ids=str)
def test_an_lr_edited_in_place_between_steps_is_read_as_torch_reads_it(case):
    opt_torch = make_optimizer("tensor")
    torch_sched = case.build(TORCH, opt_torch)
    opt = make_optimizer("tensor")
    sched = case.build(SCHEDX, opt)
    for i in range(20):
        if i == 8:
            for o in (opt_torch, opt):
                o.param_groups[2]["lr"].mul_(0.5)
        step(case, torch_sched, i)
        step(case, sched, i)
        assert lrs_of(opt) == lrs_of(opt_torch), f"step {i}"


def test_setting_last_epoch_leaves_tensor_mode_and_is_honoured():
    case = next(c for c in CASES if c.name == "CosineAnnealingLR")
    results = []
    for lib in (TORCH, SCHEDX):
        opt = make_optimizer("tensor")
        sched = case.build(lib, opt)
        for i in range(6):
            step(case, sched, i)
        sched.last_epoch = 2
        assert not in_tensor_mode(sched)
        for i in range(6):
            step(case, sched, i)
        results.append((lrs_of(opt), sched.last_epoch))
    assert results[0] == results[1]


def test_a_composite_is_one_program_over_its_children():
    case = next(c for c in CASES if c.name == "ChainedScheduler")
    opt = make_optimizer("tensor")
    sched = case.build(SCHEDX, opt)
    for i in range(3):
        step(case, sched, i)
    program = sched.__dict__["_tensor_program"]
    assert program.owner is sched
    assert program.members == list(sched._schedulers)
    assert all(child.__dict__["_tensor_program"] is program for child in sched._schedulers)


def test_a_changed_param_group_list_rebinds_the_program():
    case = next(c for c in CASES if c.name == "ExponentialLR")
    opt_torch = make_optimizer("tensor")
    torch_sched = case.build(TORCH, opt_torch)
    opt = make_optimizer("tensor")
    sched = case.build(SCHEDX, opt)
    for i in range(4):
        step(case, torch_sched, i)
        step(case, sched, i)
    first = sched.__dict__["_tensor_program"]
    for o in (opt_torch, opt):
        o.load_state_dict(o.state_dict())
    for i in range(4, 10):
        step(case, torch_sched, i)
        step(case, sched, i)
        assert lrs_of(opt) == lrs_of(opt_torch)
    assert sched.__dict__["_tensor_program"] is not first


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_plateau_takes_a_tensor_metric(dtype):
    case = next(c for c in CASES if c.name == "ReduceLROnPlateau")
    opt_torch = make_optimizer("tensor")
    torch_sched = case.build(TORCH, opt_torch)
    opt = make_optimizer("tensor")
    sched = case.build(SCHEDX, opt)
    for i in range(40):
        metric = torch.tensor(metric_at(i), dtype=dtype)
        torch_sched.step(metric)
        sched.step(metric)
        assert lrs_of(opt) == lrs_of(opt_torch), f"step {i}"
    assert in_tensor_mode(sched) == case.has_program
    assert (sched.best, sched.num_bad_epochs, sched.cooldown_counter) == (
        torch_sched.best, torch_sched.num_bad_epochs, torch_sched.cooldown_counter)


def _decay(epoch):
    return 0.9**epoch


def untraceable(epoch):
    """A lambda the tracer refuses: it calls another function."""
    return _decay(epoch)


def test_a_lambda_lr_that_cannot_be_traced_keeps_torchs_path_with_tensor_lrs():
    opt_torch, opt = make_optimizer("tensor"), make_optimizer("tensor")
    torch_sched = TORCH.LambdaLR(opt_torch, untraceable)
    sched = SCHEDX.LambdaLR(opt, untraceable)
    for _ in range(5):
        torch_sched.step()
        sched.step()
    assert not in_tensor_mode(sched)
    assert lrs_of(opt) == lrs_of(opt_torch)


def test_mixed_float_and_tensor_lrs_stay_on_torchs_path():
    opt = make_optimizer("tensor")
    opt.param_groups[1]["lr"] = 0.01
    sched = SCHEDX.ExponentialLR(opt, gamma=0.9)
    for _ in range(3):
        sched.step()
    assert not in_tensor_mode(sched)


def test_tensor_mode_class_is_still_the_torch_class():
    opt = make_optimizer("tensor")
    sched = SCHEDX.CosineAnnealingLR(opt, T_max=10)
    # (The first step after construction is torch's own: before torch 2.9, whole.)
    sched.step()
    sched.step()
    assert in_tensor_mode(sched)
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert isinstance(sched, schedx.CosineAnnealingLR)
    assert type(sched).__name__ == "CosineAnnealingLR"
    _tensor_mode.leave(sched)
    assert type(sched) is schedx.CosineAnnealingLR


def _momentum_run(lib, tensors: bool, use_betas: bool, steps=25):
    """OneCycleLR (Adam, betas) or CyclicLR (SGD, momentum) cycling momentum; with `tensors`, the LRs
    and the momentum (or betas[0]) become float64 tensors after construction."""
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(3)]
    if use_betas:
        opt = torch.optim.Adam([{"params": [p], "lr": 0.01 * (k + 1)} for k, p in enumerate(params)])
        sched = lib.OneCycleLR(opt, max_lr=0.3, total_steps=40)
    else:
        opt = torch.optim.SGD([{"params": [p], "lr": 0.01 * (k + 1)} for k, p in enumerate(params)], momentum=0.9)
        sched = lib.CyclicLR(opt, 0.01, 0.1, step_size_up=4)
    key = (lambda g: g["betas"][0]) if use_betas else (lambda g: g["momentum"])
    out = []
    for k in range(steps):
        if tensors and k == 1:
            # After the first step, which is torch's own (before torch 2.9, whole: it assigns floats).
            make_lrs_and_momenta_tensors(opt, use_betas)
        sched.step()
        out.append([(float(g["lr"]), float(key(g))) for g in opt.param_groups])
    return sched, out


@pytest.mark.parametrize("use_betas", [True, False], ids=["OneCycleLR-betas", "CyclicLR-momentum"])
def test_momentum_tensors_cycle_in_place_with_the_float_paths_values(use_betas):
    _, expected = _momentum_run(TORCH, tensors=False, use_betas=use_betas)
    sched, got = _momentum_run(SCHEDX, tensors=True, use_betas=use_betas)
    assert in_tensor_mode(sched)
    assert sched.__dict__["_tensor_program"].momenta is not None
    assert got == expected


def test_float_momentum_with_cycling_keeps_torchs_path():
    # The program can only write momentum into tensors; float momentum stays with torch's code.
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.SGD([{"params": params, "lr": torch.tensor(0.01, dtype=torch.float64)}], momentum=0.9)
    sched = SCHEDX.CyclicLR(opt, 0.01, 0.1, step_size_up=4)
    for _ in range(3):
        sched.step()
    assert not in_tensor_mode(sched)
    assert type(opt.param_groups[0]["momentum"]) is float


def test_a_scheduler_in_tensor_mode_can_be_deep_copied_and_pickled():
    import copy
    import pickle

    case = next(c for c in CASES if c.name == "StepLR")
    opt = make_optimizer("tensor")
    sched = case.build(SCHEDX, opt)
    for i in range(4):
        step(case, sched, i)
    assert in_tensor_mode(sched)
    state = pickle.loads(pickle.dumps(sched)).state_dict()
    assert _comparable(state) == _comparable(sched.state_dict())
    twin = copy.deepcopy({"opt": opt, "sched": sched})
    for i in range(4, 10):
        step(case, sched, i)
        step(case, twin["sched"], i)
        assert lrs_of(twin["opt"]) == lrs_of(opt)


@pytest.mark.parametrize("case", PROGRAM_CASES, ids=str)
def test_a_step_method_bound_before_tensor_mode_keeps_one_program(case):
    opt = make_optimizer("tensor")
    sched = case.build(SCHEDX, opt)
    bound_step = sched.step  # bound to the class the scheduler had before tensor mode
    for i in range(3):
        step(case, sched, i)
    program = sched.__dict__["_tensor_program"]
    for i in range(3, 10):
        bound_step(metric_at(i)) if case.takes_metric else bound_step()
    assert sched.__dict__["_tensor_program"] is program


def test_a_chain_with_a_child_without_a_stage_leaves_the_other_childrens_programs_alone():
    opt_torch, opt = make_optimizer("tensor"), make_optimizer("tensor")
    scheds = [
        L.ChainedScheduler([L.ExponentialLR(o, gamma=0.9), L.LambdaLR(o, untraceable)])
        for L, o in ((TORCH, opt_torch), (SCHEDX, opt))
    ]
    for _ in range(3):
        for s in scheds:
            s.step()
    exponential = scheds[1]._schedulers[0]
    program = exponential.__dict__["_tensor_program"]
    for _ in range(5):
        for s in scheds:
            s.step()
        assert lrs_of(opt) == lrs_of(opt_torch)
    assert exponential.__dict__["_tensor_program"] is program
    assert "_tensor_program" not in scheds[1].__dict__


def test_a_fractional_epoch_keeps_torchs_path_with_tensor_lrs():
    # step(2.5) leaves last_epoch a float; a program counts in ints, so torch's code keeps the steps.
    opt_torch, opt = make_optimizer("tensor"), make_optimizer("tensor")
    scheds = [L.CosineAnnealingLR(o, T_max=7) for L, o in ((TORCH, opt_torch), (SCHEDX, opt))]
    for s in scheds:
        s.step()
        s.step(2.5)
    for _ in range(6):
        for s in scheds:
            s.step()
        assert lrs_of(opt) == lrs_of(opt_torch)
    assert not in_tensor_mode(scheds[1])
