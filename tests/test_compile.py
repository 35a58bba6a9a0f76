"""torch.compile: a compiled training step that calls the optimizer's step and schedx's step() gives the
eager LRs. With tensor LRs (torch.compile's way of scheduling without recompiling), schedx's step is
the custom op schedx::step_program, one node of the graph: no graph break at the engine call."""
from __future__ import annotations

import pytest
import torch

from tensor_cases import WARMUP_COSINE, dynamo_traces_list_identity

from schedx import _torch_era
from schedx import lr_scheduler as schedx_lr

torch_lr = torch.optim.lr_scheduler
pytestmark = pytest.mark.filterwarnings("ignore")
STEPS = 16
WARMUP = 2  # eager steps first: the first step is torch's own, the second enters tensor mode

SCHEDULERS = {
    "CosineAnnealingLR": lambda L, o: L.CosineAnnealingLR(o, T_max=7, eta_min=1e-4),
    "OneCycleLR": lambda L, o: L.OneCycleLR(o, max_lr=[0.2, 0.1], total_steps=STEPS + 4, cycle_momentum=False),
    "SequentialLR": lambda L, o: L.SequentialLR(
        o, [L.LinearLR(o, start_factor=0.1, total_iters=4), L.ExponentialLR(o, gamma=0.9)], milestones=[4]
    ),
    "LambdaLR-traced": lambda L, o: L.LambdaLR(o, lambda e: min(1.0, (e + 1) / 6) * 0.95**e),
    "ScheduleLR": lambda L, o: L.ScheduleLR(o, WARMUP_COSINE) if L is schedx_lr else L.LambdaLR(o, WARMUP_COSINE),
}


def setup(lib, name, lr_kind="tensor"):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)

    def lr(value):
        return torch.tensor(value, dtype=torch.float64) if lr_kind == "tensor" else value

    optimizer = torch.optim.SGD(
        [{"params": [model.weight], "lr": lr(0.1)}, {"params": [model.bias], "lr": lr(0.05)}], lr=0.1, momentum=0.9
    )
    return model, optimizer, SCHEDULERS[name](lib, optimizer)


def train(lib, name, backend=None, lr_kind="tensor"):
    """LRs after each step and the final parameters; from step WARMUP on, the optimizer's and the
    scheduler's steps run as one torch.compile'd function when `backend` is given."""
    model, optimizer, scheduler = setup(lib, name, lr_kind)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))

    def train_step():
        optimizer.step()
        scheduler.step()

    compiled = torch.compile(train_step, backend=backend) if backend else train_step
    lrs = []
    for k in range(STEPS):
        model(x).square().mean().backward()
        (compiled if k >= WARMUP else train_step)()
        optimizer.zero_grad()
        lrs.append([float(g["lr"]) for g in optimizer.param_groups])
    return lrs, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_a_compiled_training_step_gives_the_eager_lrs(name):
    torch._dynamo.reset()
    lrs, params = train(schedx_lr, name, backend="aot_eager")
    assert lrs == train(schedx_lr, name)[0]
    assert lrs == train(torch_lr, name)[0]
    # The optimizer's compiled step is the same with torch's scheduler: so are the parameters.
    torch._dynamo.reset()
    assert all(torch.equal(a, b) for a, b in zip(params, train(torch_lr, name, backend="aot_eager")[1]))


def _decay(epoch):
    return 0.9**epoch


def untraceable(epoch):
    """A lambda the tracer refuses (it calls another function): its LambdaLR has no program."""
    return _decay(epoch)


def test_a_compiled_chain_whose_children_keep_their_own_programs_gives_torchs_lrs(monkeypatch):
    # The chain is not one program (a child has no stage): its children step one by one.
    monkeypatch.setitem(SCHEDULERS, "chain", lambda L, o: L.ChainedScheduler(
        [L.LinearLR(o, start_factor=0.1, total_iters=4), L.LambdaLR(o, untraceable)]))
    torch._dynamo.reset()
    assert train(schedx_lr, "chain", backend="aot_eager")[0] == train(torch_lr, "chain")[0]


def test_the_inductor_compiled_step_gives_the_eager_lrs_and_torchs_parameters():
    torch._dynamo.reset()
    lrs, params = train(schedx_lr, "OneCycleLR", backend="inductor")
    torch._dynamo.reset()
    torch_lrs, torch_params = train(torch_lr, "OneCycleLR", backend="inductor")
    assert lrs == torch_lrs == train(schedx_lr, "OneCycleLR")[0]
    # The parameters are torch's compiled ones (inductor's optimizer step may round differently from
    # the eager one: it does in torch 2.5).
    assert all(torch.equal(a, b) for a, b in zip(params, torch_params))


@pytest.mark.skipif(not dynamo_traces_list_identity(), reason="this torch's dynamo cannot trace the step in one graph")
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.skipif(
        name == "SequentialLR" and not _torch_era.SEQUENTIAL_PROGRAM,
        reason="this torch's SequentialLR is not one program (schedx/_torch_era.py)"))
    for name in SCHEDULERS
])
def test_the_compiled_scheduler_step_is_one_graph_around_the_engine_op(name):
    torch._dynamo.reset()
    _, optimizer, scheduler = setup(schedx_lr, name)
    for _ in range(WARMUP):
        optimizer.step()
        scheduler.step()
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    step = torch.compile(scheduler.step, backend=record, fullgraph=True)  # a graph break raises
    before = [float(g["lr"]) for g in optimizer.param_groups]
    step()
    assert len(graphs) == 1
    assert "schedx.step_program" in str(graphs[0].graph)
    assert [float(g["lr"]) for g in optimizer.param_groups] != before


def test_the_op_leaves_eager_steps_to_the_direct_engine_call(monkeypatch):
    from schedx import _tensor_mode

    _, optimizer, scheduler = setup(schedx_lr, "CosineAnnealingLR")
    calls = []
    monkeypatch.setattr(_tensor_mode, "step_program", lambda *a: calls.append(a))
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert "_tensor_program" in scheduler.__dict__ and calls == []
