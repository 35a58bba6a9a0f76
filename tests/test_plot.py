"""`python -m schedx plot` and schedx.plot: schedule curves before training, computed by the engine,
equal to what torch's scheduler writes step by step."""
from __future__ import annotations

import pytest
import torch

from schedx import _C, plot
from schedx import lr_scheduler as schedx_lr
from schedx import schedules as S
from schedx.__main__ import main

SCHEDULES = [
    "StepLR(step_size=7, gamma=0.5)",
    "MultiStepLR(milestones=[10, 30, 30], gamma=0.3)",
    "ConstantLR(factor=0.25, total_iters=12)",
    "LinearLR(start_factor=0.1, total_iters=40)",
    "ExponentialLR(gamma=0.97)",
    "PolynomialLR(total_iters=60, power=1.7)",
    "CosineAnnealingLR(T_max=50, eta_min=1e-4)",
    "CosineAnnealingWarmRestarts(T_0=10, T_mult=2, eta_min=1e-4)",
    "CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=9, mode='triangular2')",
    "OneCycleLR(max_lr=0.3, total_steps=100)",
    "OneCycleLR(max_lr=0.3, total_steps=100, anneal_strategy='linear', three_phase=True)",
    "SWALR(swa_lr=0.05, anneal_epochs=20)",
]
STEPS = 100


def torch_curve(text: str, steps: int, lr: float):
    """torch's own class, on float LRs and momentum, stepped by hand."""
    name, kwargs = plot.parse_schedule(text)
    module = torch.optim.swa_utils if name == "SWALR" else torch.optim.lr_scheduler
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=plot.MOMENTUM)
    sched = getattr(module, name)(opt, **kwargs)
    lrs, momenta = [], []
    for t in range(steps):
        if t:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        momenta.append(opt.param_groups[0]["momentum"])
    return lrs, momenta


@pytest.mark.parametrize("text", SCHEDULES)
def test_a_curve_is_what_torch_writes_step_by_step(text):
    got = plot.curve(text, STEPS, lr=0.05)
    lrs, momenta = torch_curve(text, STEPS, lr=0.05)
    assert got.lrs == lrs
    if got.momenta is not None:
        assert got.momenta == momenta


def test_cycling_schedules_come_with_their_momentum():
    assert plot.curve("OneCycleLR(max_lr=0.1, total_steps=50)", 40).momenta is not None
    assert plot.curve("CyclicLR(base_lr=0.01, max_lr=0.1)", 40).momenta is not None
    assert plot.curve("CosineAnnealingLR(T_max=50)", 40).momenta is None


def test_a_long_curve_is_recorded_in_one_engine_call(monkeypatch):
    calls = []
    real = _C.record_program
    monkeypatch.setattr(_C, "record_program", lambda *a: calls.append(a[1]) or real(*a))
    curve = plot.curve("CosineAnnealingLR(T_max=1000)", 100_000)
    assert len(curve.lrs) == 100_000
    assert calls == [100_000 - 3]


def test_an_unknown_schedule_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown schedule 'Foo'; known: .*OneCycleLR"):
        plot.curve("Foo(x=1)", 10)


def test_wrong_arguments_say_which_schedule():
    with pytest.raises(ValueError, match="StepLR: .*step_size"):
        plot.curve("StepLR(gamma=0.1)", 10)


@pytest.mark.parametrize(
    "text, message",
    [
        ("StepLR(3)", "Name\\(key=value"),
        ("StepLR(step_size=len([1]))", "not a literal"),
        ("StepLR(step_size=", "cannot read"),
    ],
)
def test_a_schedule_that_is_not_name_and_literals_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        plot.parse_schedule(text)


def test_cli_prints_csv(capsys):
    assert main(["plot", "StepLR(step_size=2, gamma=0.5)", "--steps", "5", "--lr", "1.0", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '"step","StepLR(step_size=2, gamma=0.5) lr"'
    assert [float(line.split(",")[1]) for line in lines[1:]] == torch_curve("StepLR(step_size=2, gamma=0.5)", 5, 1.0)[0]


def test_cli_writes_one_png_for_several_schedules(tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert main(["plot", "OneCycleLR(max_lr=0.1, total_steps=100)", "CosineAnnealingLR(T_max=100)",
                 "--steps", "100", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 schedule(s)" in capsys.readouterr().out


def test_cli_reports_a_bad_schedule_as_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", "Foo(x=1)"])
    assert exit_info.value.code == 2
    assert "unknown schedule 'Foo'" in capsys.readouterr().err


CUSTOM_SCHEDULES = [
    ("warmup(10, cosine(steps=80, end=0.01))", S.warmup(10, S.cosine(steps=80, end=0.01))),
    ("cosine_with_warmup(10, 100)", S.cosine_with_warmup(10, 100)),
    ("piecewise_constant([10, 30], [1.0, 0.5, 0.1])", S.piecewise_constant([10, 30], [1.0, 0.5, 0.1])),
    ("timm_cosine(t_initial=30, lr_min=1e-4, cycle_limit=3, warmup_t=5)",
     S.timm_cosine(t_initial=30, lr_min=1e-4, cycle_limit=3, warmup_t=5)),
]


@pytest.mark.parametrize("text, schedule", CUSTOM_SCHEDULES, ids=[t for t, _ in CUSTOM_SCHEDULES])
def test_a_custom_schedules_curve_is_what_schedule_lr_writes(text, schedule):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    sched = schedx_lr.ScheduleLR(opt, schedule)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(STEPS - 1):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    curve = plot.curve(text, STEPS, lr=0.05)
    assert curve.lrs == lrs
    assert curve.momenta is None


def test_a_custom_schedule_that_fails_says_at_which_step():
    with pytest.raises(ValueError, match="fails at step 1: ZeroDivisionError"):
        plot.custom_curve("x", 1.0 / (S.step() - 1), 10, 0.1)


def test_a_million_step_custom_curve_is_one_engine_call(monkeypatch):
    calls = []
    real = _C.record_schedule
    monkeypatch.setattr(_C, "record_schedule", lambda *a: calls.append(a[1]) or real(*a))
    assert len(plot.curve("warmup_stable_decay(1000, 100000, num_training_steps=1000000)", 1_000_000).lrs) == 1_000_000
    assert calls == [1_000_000]


def test_an_unknown_function_inside_a_custom_schedule_is_named():
    with pytest.raises(ValueError, match="unknown schedule 'cosinus'"):
        plot.curve("warmup(10, cosinus(steps=10))", 10)
