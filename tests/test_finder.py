"""schedx.find_lr, the LR range test, and `python -m schedx find-lr --demo`."""
from __future__ import annotations

import math

import pytest
import torch

import schedx
from schedx import finder
from schedx.__main__ import main


def test_the_exponential_sweep_runs_from_start_to_end_at_a_constant_ratio():
    lrs = finder.sweep_lrs(1e-6, 1.0, 13, "exp")
    assert lrs[0] == 1e-6 and math.isclose(lrs[-1], 1.0)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) - min(ratios) < 1e-9


def test_the_linear_sweep_runs_from_start_to_end_in_equal_steps():
    lrs = finder.sweep_lrs(0.1, 1.0, 10, "linear")
    assert lrs[0] == 0.1 and math.isclose(lrs[-1], 1.0)
    steps = [b - a for a, b in zip(lrs, lrs[1:])]
    assert max(steps) - min(steps) < 1e-12


@pytest.mark.parametrize("args", [(1.0, 0.1, 10, "exp"), (0.0, 1.0, 10, "exp"), (1e-3, 1.0, 1, "exp"),
                                  (1e-3, 1.0, 10, "cubic")])
def test_a_bad_sweep_is_a_value_error(args):
    with pytest.raises(ValueError):
        finder.sweep_lrs(*args)


def test_the_model_and_optimizer_are_restored_exactly():
    model, optimizer, loss_fn, batches = finder.demo_problem()
    optimizer.zero_grad()
    loss_fn(model(batches[0][0]), batches[0][1]).backward()
    optimizer.step()  # some momentum state to restore too
    params = [p.detach().clone() for p in model.parameters()]
    state = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    groups = [dict(g) for g in optimizer.state_dict()["param_groups"]]
    finder.find_lr(model, optimizer, loss_fn, batches, num_iter=40, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert all(torch.equal(v, optimizer.state_dict()["state"][0][k]) for k, v in state.items())
    assert optimizer.state_dict()["param_groups"] == groups


def test_a_diverging_loss_stops_the_sweep_and_the_suggestion_comes_before_it():
    model, optimizer, loss_fn, batches = finder.demo_problem()
    result = finder.find_lr(model, optimizer, loss_fn, batches, start_lr=1e-5, end_lr=100.0,
                            num_iter=100, progress=False)
    assert result.stopped_early
    assert len(result.lrs) < 100
    assert result.suggestion is not None and 1e-5 < result.suggestion < result.lrs[-1]
    assert "steepest descent" in result.reason


def test_a_loss_that_never_falls_gives_no_suggestion_and_says_so():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [(torch.ones(4, 2), torch.ones(4, 1))]

    def constant_loss(output, target):
        return output.sum() * 0.0 + 1.0

    result = finder.find_lr(model, optimizer, constant_loss, data, num_iter=30, progress=False)
    assert result.suggestion is None
    assert "never decreased" in result.reason


def test_tensor_lrs_are_swept_in_place_and_restored():
    model, _, loss_fn, batches = finder.demo_problem()
    lr = torch.tensor(0.01, dtype=torch.float64)
    optimizer = torch.optim.SGD([{"params": model.parameters(), "lr": lr}])
    seen = []

    def recording_loss(output, target):
        current = optimizer.param_groups[0]["lr"]
        seen.append((current, float(current)))
        return loss_fn(output, target)

    result = finder.find_lr(model, optimizer, recording_loss, batches, num_iter=20, progress=False)
    assert all(t is lr for t, _ in seen)
    assert [value for _, value in seen] == result.lrs
    assert float(optimizer.param_groups[0]["lr"]) == 0.01


def test_progress_goes_to_stderr(capsys):
    model, optimizer, loss_fn, batches = finder.demo_problem()
    finder.find_lr(model, optimizer, loss_fn, batches, num_iter=20)
    assert "[find_lr]" in capsys.readouterr().err


def test_find_lr_is_exported():
    assert schedx.find_lr is finder.find_lr


def test_cli_demo_suggests_an_lr_and_plots(tmp_path, capsys):
    out = tmp_path / "lr.png"
    assert main(["find-lr", "--demo", "--num-iter", "60", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "suggested lr:" in printed and "why:" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_find_lr_without_demo_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["find-lr"])
    assert exit_info.value.code == 2
