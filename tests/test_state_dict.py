"""State dicts: same keys as torch, cross-loadable both ways mid-run, and loadable with
``torch.load(weights_only=True)`` (the default in Lightning, transformers and accelerate).

"Continues identically" always means: compared step by step with a torch twin that ran the whole
time without interruption (``Twins.handover(only_b=True)``)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from twins import (
    ALL_NAMES,
    CANONICAL,
    SCHEDX,
    TORCH,
    Fn,
    Sched,
    SwaPattern,
    Twins,
    assert_same,
    make_optimizer,
    metric_at,
    save_and_load_weights_only,
)

# Every class, plus the variants whose state dicts carry something unusual.
STATE_SPECS = {
    **CANONICAL,
    "LambdaLR with callable objects": Sched(
        "LambdaLR", lr_lambda=[Fn("obj_exp", 0.9), Fn("exp", 0.8), Fn("obj_exp", 0.7)]
    ),
    "MultiplicativeLR with a callable object": Sched(
        "MultiplicativeLR", lr_lambda=Fn("obj_const", 0.95)
    ),
    "CyclicLR with a custom scale_fn object": Sched(
        "CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=2, scale_fn=Fn("obj_inverse", 0.5),
        scale_mode="iterations",
    ),
    "CyclicLR with a lambda scale_fn": Sched(
        "CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=3, scale_fn=Fn("inverse", 0.5),
    ),
    "CyclicLR exp_range": Sched(
        "CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=3, mode="exp_range", gamma=0.9
    ),
    "OneCycleLR three_phase linear": Sched(
        "OneCycleLR", max_lr=0.2, epochs=2, steps_per_epoch=9, three_phase=True,
        anneal_strategy="linear",
    ),
    "ReduceLROnPlateau with a min_lr list": Sched(
        "ReduceLROnPlateau", mode="max", patience=0, min_lr=[0.01, 0.0, 0.02]
    ),
    "ChainedScheduler of a SequentialLR": Sched(
        "ChainedScheduler",
        children=[CANONICAL["SequentialLR"], Sched("ExponentialLR", gamma=0.95)],
    ),
    "SWA pattern": SwaPattern(CANONICAL["CosineAnnealingLR"], CANONICAL["SWALR"], swa_start=4),
}


def _keys(sd):
    """Keys of a state dict, recursively for the children of composites."""
    out = set(sd)
    for i, child in enumerate(sd.get("_schedulers", [])):
        out |= {f"_schedulers[{i}].{k}" for k in _keys(child)}
    return out


@pytest.mark.parametrize("name", ALL_NAMES)
def test_state_dict_keys_equal_torch(name):
    tw = Twins(CANONICAL[name], n_groups=3)
    assert _keys(tw.b.sched.state_dict()) == _keys(tw.a.sched.state_dict()), "after construction"
    tw.optimizer_step()
    tw.step(5)
    assert _keys(tw.b.sched.state_dict()) == _keys(tw.a.sched.state_dict()), "after 5 steps"


@pytest.mark.parametrize("spec", STATE_SPECS)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_torch_state_dict_loads_into_schedx_and_continues_identically(spec, kind):
    tw = Twins(STATE_SPECS[spec], kind=kind, n_groups=3, impl_b=TORCH)
    tw.optimizer_step()
    tw.step(5)
    tw.handover(only_b=True, to=SCHEDX)
    assert tw.b.impl is SCHEDX
    tw.step(12)


@pytest.mark.parametrize("spec", STATE_SPECS)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_schedx_state_dict_loads_into_torch_and_continues_identically(spec, kind):
    tw = Twins(STATE_SPECS[spec], kind=kind, n_groups=3)
    tw.optimizer_step()
    tw.step(5)
    tw.handover(only_b=True, to=TORCH)
    assert tw.b.impl is TORCH
    tw.step(12)


@pytest.mark.parametrize("spec", STATE_SPECS)
def test_state_dict_survives_torch_save_and_weights_only_load(spec):
    """torch.save + torch.load(weights_only=True) of schedx's state dict gives back an equal dict,
    and a scheduler loaded from it continues identically."""
    tw = Twins(STATE_SPECS[spec], n_groups=3)
    tw.optimizer_step()
    tw.step(4)
    sd = tw.b.sched.state_dict()
    if _refused_by_weights_only(tw.a.sched.state_dict()):
        assert _refused_by_weights_only(sd)
        return
    assert_same(save_and_load_weights_only(sd), sd, "reloaded state_dict",
                f"{spec}: weights_only round trip changed the state dict")
    tw.handover(only_b=True, serialize=True, to=SCHEDX)
    tw.step(10)


@pytest.mark.parametrize("spec", STATE_SPECS)
def test_state_dict_continues_identically_after_several_hand_overs(spec):
    tw = Twins(STATE_SPECS[spec], n_groups=3)
    tw.optimizer_step()
    for _ in range(4):
        tw.step(3)
        tw.handover()  # both twins switch implementation
    tw.step(3)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_load_state_dict_leaves_the_input_dict_as_torch_does(name):
    """Torch restores the keys it pops (pytorch#32756) -- except CyclicLR, which drops
    _scale_fn_custom; schedx must do the same to the caller's dict."""
    tw = Twins(CANONICAL[name], n_groups=3)
    tw.step(3)
    sd = tw.a.sched.state_dict()
    given = {}

    def load(side):
        d = copy.deepcopy(sd)
        side.sched.load_state_dict(d)
        given[side.label] = d

    tw.do(load, "load_state_dict(torch's state dict)")
    assert_same(given["torch"], given["schedx"], "state_dict after load", name)
    tw.step(3)


@pytest.mark.parametrize("spec", STATE_SPECS)
def test_checkpoint_resume_into_fresh_optimizer_and_scheduler_matches_torch(spec):
    """The usual resume: new optimizer, new scheduler, optimizer.load_state_dict(ckpt),
    scheduler.load_state_dict(ckpt) -- torch checkpoint into schedx, and schedx into torch."""
    spec = STATE_SPECS[spec]

    def checkpoint(impl):
        opt = make_optimizer("sgd", [0.1, 0.2, 0.3])
        sched = spec.build(impl, opt)
        opt.step()
        for i in range(6):
            _step(spec, sched, i)
        return save_and_load_weights_only(
            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
        )

    def resume(impl, ckpt):
        opt = make_optimizer("sgd", [0.5, 0.5, 0.5])  # different LRs: the checkpoint wins
        sched = spec.build(impl, opt)
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        return opt, sched

    try:
        checkpoint(TORCH)
    except pickle.UnpicklingError:
        with pytest.raises(pickle.UnpicklingError):
            checkpoint(SCHEDX)
        return
    for saved_by, resumed_by in [(TORCH, SCHEDX), (SCHEDX, TORCH), (SCHEDX, SCHEDX)]:
        ref_opt, ref = resume(TORCH, checkpoint(TORCH))
        opt, sched = resume(resumed_by, checkpoint(saved_by))
        for i in range(6, 16):
            ctx = f"{spec!r}: saved by {saved_by}, resumed by {resumed_by}, step {i}"
            _step(spec, ref, i)
            _step(spec, sched, i)
            assert_same([{k: v for k, v in g.items() if k != "params"} for g in ref_opt.param_groups],
                        [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
                        "param_groups", ctx)
            assert_same(ref.get_last_lr(), sched.get_last_lr(), "get_last_lr()", ctx)


def _refused_by_weights_only(state) -> bool:
    """Whether torch.load(weights_only=True) refuses a saved state dict: torch's own SWALR's, which
    holds its anneal function, before torch 2.10; schedx's must be refused alike."""
    try:
        save_and_load_weights_only(state)
    except pickle.UnpicklingError:
        return True
    return False


def _step(spec, sched, i):
    if spec.takes_metric:
        sched.step(metric_at(i))
    else:
        sched.step()


def test_state_dict_tensors_survive_weights_only_with_tensor_lrs():
    """With tensor LRs, base_lrs/_last_lr hold tensors; they must round-trip too. (float64: torch
    computes float32 tensor LRs in float32, schedx in double, so only float64 ones compare equal.)"""
    lrs = [torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)]
    tw = Twins(CANONICAL["CosineAnnealingLR"], lrs=lrs)
    tw.step(3)
    sd = tw.b.sched.state_dict()
    assert_same(save_and_load_weights_only(sd), sd, "reloaded state_dict")
    tw.handover(only_b=True, serialize=True, to=SCHEDX)
    tw.step(4)
