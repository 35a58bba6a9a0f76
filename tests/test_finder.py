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


def run_quietly(model, optimizer, data, loss_fn=torch.nn.functional.mse_loss, **kwargs):
    return finder.find_lr(model, optimizer, loss_fn, data, progress=False, **{"num_iter": 20, **kwargs})


def test_every_submodules_training_flag_is_restored():
    model, optimizer, loss_fn, batches = finder.demo_problem()
    model.train()
    model[1].eval()  # a frozen part, as in fine-tuning
    flags = [m.training for m in model.modules()]
    run_quietly(model, optimizer, batches)
    assert [m.training for m in model.modules()] == flags


def test_missing_gradients_stay_missing():
    model, optimizer, loss_fn, batches = finder.demo_problem()
    assert all(p.grad is None for p in model.parameters())
    run_quietly(model, optimizer, batches)
    assert all(p.grad is None for p in model.parameters())


def test_existing_gradients_keep_their_tensors_and_values():
    model, optimizer, loss_fn, batches = finder.demo_problem()
    loss_fn(model(batches[0][0]), batches[0][1]).backward()
    grads = [(p.grad, p.grad.clone()) for p in model.parameters()]
    run_quietly(model, optimizer, batches)
    assert all(p.grad is grad and torch.equal(grad, value) for p, (grad, value) in zip(model.parameters(), grads))


def test_gradients_of_parameters_outside_the_optimizer_are_restored():
    model, _, loss_fn, batches = finder.demo_problem()
    optimizer = torch.optim.SGD(model[2].parameters(), lr=0.01)  # the first layer is frozen by omission
    run_quietly(model, optimizer, batches)
    assert all(p.grad is None for p in model[0].parameters())


class CountingModel(torch.nn.Module):
    """A linear model that counts its forward calls in a non-persistent buffer (not in its state dict)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(16, 1)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64), persistent=False)

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


def test_non_persistent_buffers_are_restored():
    _, _, _, batches = finder.demo_problem()
    model = CountingModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    run_quietly(model, optimizer, batches)
    assert int(model.calls) == 0


def test_the_optimizer_keeps_its_param_group_dicts():
    model, optimizer, _, batches = finder.demo_problem()
    groups = list(optimizer.param_groups)
    run_quietly(model, optimizer, batches)
    assert all(a is b for a, b in zip(optimizer.param_groups, groups, strict=True))


def test_the_optimizer_keeps_its_state_tensors_with_their_values():
    model, optimizer, loss_fn, batches = finder.demo_problem()
    loss_fn(model(batches[0][0]), batches[0][1]).backward()
    optimizer.step()
    buffers = [(optimizer.state[p]["momentum_buffer"], optimizer.state[p]["momentum_buffer"].clone())
               for p in model.parameters()]
    run_quietly(model, optimizer, batches)
    for p, (buffer, value) in zip(model.parameters(), buffers):
        assert optimizer.state[p]["momentum_buffer"] is buffer and torch.equal(buffer, value)


def test_a_tensor_lr_stays_the_same_tensor():
    model, _, _, batches = finder.demo_problem()
    lr = torch.tensor(0.01, dtype=torch.float64)
    optimizer = torch.optim.SGD([{"params": model.parameters(), "lr": lr}])
    run_quietly(model, optimizer, batches)
    assert optimizer.param_groups[0]["lr"] is lr


def test_torchs_random_number_generator_is_restored():
    _, _, _, batches = finder.demo_problem()
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    state = torch.get_rng_state()
    run_quietly(model, optimizer, batches)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_scheduler_still_warns_about_its_first_step_coming_before_the_optimizers():
    # torch's LRScheduler wraps optimizer.step to notice the first optimizer step; the sweep's steps
    # must not count, or the warning about calling scheduler.step() first is lost.
    model, optimizer, _, batches = finder.demo_problem()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    run_quietly(model, optimizer, batches)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        scheduler.step()


def test_an_exception_mid_sweep_propagates_with_everything_restored():
    model, optimizer, _, batches = finder.demo_problem()
    real_step, calls = optimizer.step, []

    def failing_step(*args, **kwargs):  # after a backward pass: the gradients are there
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("out of memory")
        return real_step(*args, **kwargs)

    optimizer.step = failing_step
    params = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="out of memory"):
        run_quietly(model, optimizer, batches)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_an_iterator_that_runs_out_ends_the_sweep_and_says_after_how_many_batches():
    model, optimizer, _, batches = finder.demo_problem()
    result = run_quietly(model, optimizer, iter(batches[:10]), num_iter=40)
    assert len(result.lrs) == 10
    assert result.stopped_early
    assert result.stop_reason == "the data ran out after 10 batches (an iterator cannot be cycled)"


class OnePassData:
    """An iterable whose second pass yields nothing (a stream read once)."""

    def __init__(self, batches):
        self.batches = batches
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        return iter(self.batches if self.passes == 1 else [])


def test_an_iterable_empty_on_its_second_pass_ends_the_sweep():
    model, optimizer, _, batches = finder.demo_problem()
    result = run_quietly(model, optimizer, OnePassData(batches[:10]), num_iter=40)
    assert len(result.lrs) == 10
    assert "ran out after 10 batches" in result.stop_reason


def test_a_diverging_sweep_says_why_it_stopped():
    model, optimizer, loss_fn, batches = finder.demo_problem()
    result = run_quietly(model, optimizer, batches, start_lr=1e-5, end_lr=100.0, num_iter=100)
    assert result.stop_reason.startswith("the loss diverged at lr ")


def test_a_huge_num_iter_costs_nothing_up_front():
    model, optimizer, loss_fn, batches = finder.demo_problem()
    result = run_quietly(model, optimizer, iter(batches[:8]), num_iter=10**12)
    assert len(result.lrs) == 8


@pytest.mark.parametrize("args", [(1e-3, math.inf, 10, "exp"), (1e-3, 1.0, 10.0, "exp")])
def test_a_sweep_to_infinity_or_a_non_int_count_is_a_value_error(args):
    with pytest.raises(ValueError):
        finder.sweep_lrs(*args)


@pytest.mark.parametrize("setting", [{"smoothing": 0.0}, {"smoothing": 1.5}, {"diverge_factor": 0.5},
                                     {"diverge_factor": math.nan}, {"skip_start": -1}, {"skip_end": 2.5}])
def test_a_bad_setting_is_a_value_error_before_the_sweep(setting):
    model, optimizer, _, batches = finder.demo_problem()
    calls = []

    def counting_loss(output, target):
        calls.append(1)
        return torch.nn.functional.mse_loss(output, target)

    with pytest.raises(ValueError, match=next(iter(setting))):
        run_quietly(model, optimizer, batches, loss_fn=counting_loss, **setting)
    assert calls == []


def test_the_plot_frames_the_smoothed_loss_without_its_diverging_last_point():
    from schedx.finder import _frame

    low, high = _frame([20.0, 15.0, 10.0, 5.0, 200.0])
    assert 0 < low < 5 and 20 < high < 30
