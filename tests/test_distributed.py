"""schedx in distributed training: two gloo processes on loopback train a model wrapped in DDP or
FSDP2 (`fully_shard`) with a schedx scheduler, checkpoint mid-run with torch.distributed.checkpoint
(model and optimizer) plus the scheduler's state dict, and resume in a fresh process group. The
resumed run's LRs and parameters equal those of a run that was never interrupted."""
from __future__ import annotations

import os
import socket
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
STEPS = 10
CHECKPOINT_AT = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(wrapper: str):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    if wrapper == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(model)
        layers = model.module
    else:
        from torch.distributed.fsdp import fully_shard

        for layer in (model[0], model[2]):
            fully_shard(layer)
        fully_shard(model)
        layers = model
    optimizer = torch.optim.SGD(
        [{"params": layers[0].parameters(), "lr": 0.05}, {"params": layers[2].parameters(), "lr": 0.02}],
        lr=0.05,
        momentum=0.9,
    )
    from schedx import lr_scheduler

    scheduler = lr_scheduler.SequentialLR(
        optimizer,
        [lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=3),
         lr_scheduler.OneCycleLR(optimizer, max_lr=[0.1, 0.04], total_steps=STEPS)],
        milestones=[3],
    )
    return model, optimizer, scheduler


def batch(rank: int, step: int):
    g = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(8, 4, generator=g)
    return x, x.sum(dim=1, keepdim=True)


def train(model, optimizer, scheduler, rank, steps):
    lrs = []
    for step in steps:
        x, y = batch(rank, step)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        lrs.append([float(g["lr"]) for g in optimizer.param_groups])
    return lrs


def full_parameters(model) -> list[torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return [state[k].detach().clone() for k in sorted(state)]


def leave_without_interpreter_teardown():
    """Ends a rank that finished its work, skipping the interpreter's finalization.

    torch keeps the default gloo group alive after destroy_process_group(): functions of
    torch.distributed.nn.functional (imported by DDP) hold it as a default argument, and DTensor's
    sharding cache (FSDP2) holds the DeviceMesh that holds it. So the group's worker threads run
    until the process ends. A collective launched during backward() (DDP's all-reduce, FSDP2's
    reduce-scatter) copies the thread-local state, which then holds backward's contextvars.Context;
    the worker thread can drop the last reference to that work after the main thread has started
    finalizing. Its decref asks for the GIL, CPython ends a non-main thread that asks during
    finalization with pthread_exit, and the unwind through a noexcept destructor calls
    std::terminate: "terminate called without an active exception", SIGABRT (gdb on a core of
    the aborted rank shows c10d::ProcessGroupGloo::runLoop -> ~AsyncWork -> ~ThreadLocalState ->
    SafePyObject decref -> take_gil -> pthread_exit). Exiting here, with the results written and
    the group destroyed, leaves no point at which that thread can run into a finalizing interpreter."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def worker(rank, port, wrapper, phase, directory, out):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            get_model_state_dict,
            get_optimizer_state_dict,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        model, optimizer, scheduler = build(wrapper)
        if phase == "uninterrupted":
            lrs = train(model, optimizer, scheduler, rank, range(STEPS))
        elif phase == "until-checkpoint":
            lrs = train(model, optimizer, scheduler, rank, range(CHECKPOINT_AT))
            state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
            dcp.save(state, checkpoint_id=os.path.join(directory, "dcp"))
            if rank == 0:
                torch.save(scheduler.state_dict(), os.path.join(directory, "scheduler.pt"))
        else:  # resumed
            state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
            dcp.load(state, checkpoint_id=os.path.join(directory, "dcp"))
            set_model_state_dict(model, state["model"])
            set_optimizer_state_dict(model, optimizer, state["optim"])
            scheduler.load_state_dict(torch.load(os.path.join(directory, "scheduler.pt"), weights_only=True))
            lrs = train(model, optimizer, scheduler, rank, range(CHECKPOINT_AT, STEPS))
        params = full_parameters(model)
        if rank == 0:
            torch.save({"lrs": lrs, "params": params}, out)
    finally:
        dist.destroy_process_group()
    leave_without_interpreter_teardown()


def run_phase(wrapper, phase, directory):
    out = os.path.join(directory, f"{phase}.pt")
    mp.spawn(worker, args=(free_port(), wrapper, phase, directory, out), nprocs=WORLD, join=True)
    return torch.load(out, weights_only=True)


@pytest.fixture(autouse=True)
def loopback_gloo(monkeypatch):
    # Without it gloo picks an interface these machines cannot use, and the processes abort.
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")


@pytest.mark.parametrize("wrapper", ["ddp", "fsdp2"])
def test_a_run_resumed_from_a_distributed_checkpoint_follows_the_uninterrupted_one(tmp_path, wrapper):
    uninterrupted = run_phase(wrapper, "uninterrupted", str(tmp_path))
    first = run_phase(wrapper, "until-checkpoint", str(tmp_path))
    resumed = run_phase(wrapper, "resumed", str(tmp_path))
    assert len(uninterrupted["lrs"]) == STEPS
    assert first["lrs"] + resumed["lrs"] == uninterrupted["lrs"]
    assert all(torch.equal(a, b) for a, b in zip(resumed["params"], uninterrupted["params"]))
    assert not all(torch.equal(a, b) for a, b in zip(first["params"], uninterrupted["params"]))
