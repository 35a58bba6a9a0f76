"""`python -m schedx plot` and schedx.plot: schedule curves before training, computed by the engine,
equal to what torch's scheduler writes step by step."""
from __future__ import annotations

import warnings

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


def cli_usage_error(capsys, *argv) -> str:
    """The one-line usage error `python -m schedx` prints for argv (exit status 2, no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def torch_failure(text: str, steps: int, lr: float = 0.1):
    """What torch's own scheduler raises within `steps` steps, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_curve(text, steps, lr)
    except Exception as error:  # noqa: BLE001 - the error is the expected value
        return error
    return None


@pytest.mark.parametrize(
    "text",
    [
        "StepLR(step_size=0)",
        "CosineAnnealingLR(T_max=0)",
        "ConstantLR(factor=0)",
        "PolynomialLR(total_iters=10, power=-1.0)",
        "OneCycleLR(max_lr=0.1, total_steps=10)",
        "CyclicLR(base_lr=0.01, max_lr=0.1, mode='exp_range', gamma=2.0)",
        "StepLR(step_size='a')",
    ],
)
def test_a_schedule_torch_cannot_step_has_no_curve_and_the_error_is_torchs(text):
    steps = 2000
    expected = torch_failure(text, steps)
    assert expected is not None
    with pytest.raises(ValueError) as error_info:
        plot.curve(text, steps)
    message = str(error_info.value)
    assert f"{type(expected).__name__}: {expected}" in message
    assert "no curve" in message


def test_the_error_names_the_step_at_which_torch_raises():
    with pytest.raises(ValueError, match="raises at step 11: "):
        plot.curve("OneCycleLR(max_lr=0.1, total_steps=10)", 50)


def test_cli_a_schedule_torch_cannot_step_is_a_usage_error(capsys, tmp_path):
    line = cli_usage_error(capsys, "plot", "CosineAnnealingLR(T_max=0)", "-o", str(tmp_path / "c.png"))
    assert "raises at step 1: ZeroDivisionError" in line
    assert not (tmp_path / "c.png").exists()


def test_cli_a_constructor_raising_other_than_value_error_is_a_usage_error(capsys):
    line = cli_usage_error(capsys, "plot", "CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=0)", "--format", "csv")
    assert line.endswith("CyclicLR: ZeroDivisionError: float division by zero")


@pytest.mark.parametrize("steps", ["0", "-5", str(plot.MAX_STEPS + 1), "1000000000000"])
def test_cli_steps_out_of_range_are_a_usage_error_with_the_limit(capsys, steps):
    line = cli_usage_error(capsys, "plot", "StepLR(step_size=3)", f"--steps={steps}", "--format", "csv")
    assert f"steps must be from 1 to {plot.MAX_STEPS:,}" in line


@pytest.mark.parametrize("steps", ["10**12", "1.5", "ten", ""])
def test_cli_steps_that_are_not_an_integer_are_a_usage_error(capsys, steps):
    assert "not an integer" in cli_usage_error(capsys, "plot", "StepLR(step_size=3)", f"--steps={steps}")


@pytest.mark.parametrize("lr", ["nan", "inf", "-inf", "-0.1"])
def test_cli_an_lr_that_is_not_finite_and_non_negative_is_a_usage_error(capsys, lr):
    assert "lr must be a finite number >= 0" in cli_usage_error(capsys, "plot", "StepLR(step_size=3)", f"--lr={lr}")


def test_cli_an_lr_that_is_not_a_number_is_a_usage_error(capsys):
    assert "'x': not a number" in cli_usage_error(capsys, "plot", "StepLR(step_size=3)", "--lr", "x")


@pytest.mark.parametrize("steps", [0, -1, plot.MAX_STEPS + 1])
def test_curve_refuses_steps_out_of_range(steps):
    with pytest.raises(ValueError, match=f"steps must be from 1 to {plot.MAX_STEPS:,}"):
        plot.curve("StepLR(step_size=3)", steps)


@pytest.mark.parametrize("steps", [10.0, "10", True])
def test_curve_refuses_steps_that_are_not_an_int(steps):
    with pytest.raises(TypeError, match="steps must be an int"):
        plot.curve("StepLR(step_size=3)", steps)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.1])
def test_curve_refuses_an_lr_that_is_not_finite_and_non_negative(lr):
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        plot.curve("StepLR(step_size=3)", 10, lr)


def test_a_custom_curve_refuses_a_nan_lr():
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        plot.curve("cosine(steps=10)", 10, float("nan"))


def test_curve_refuses_a_schedule_that_is_not_a_str():
    with pytest.raises(TypeError, match="written as a str"):
        plot.curve(S.cosine(steps=10), 10)


@pytest.mark.parametrize("text", ["StepLR(step_size=1, step_size=2)", "warmup(1, cosine(steps=1, steps=2))"])
def test_a_keyword_given_twice_is_refused(text):
    with pytest.raises(ValueError, match="keyword argument repeated"):
        plot.curve(text, 10)


def test_cli_a_missing_output_folder_is_a_usage_error(capsys, tmp_path):
    line = cli_usage_error(capsys, "plot", "StepLR(step_size=3)", "-o", str(tmp_path / "missing" / "c.png"))
    assert "no folder" in line


def test_cli_an_output_under_a_file_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert "no folder" in cli_usage_error(capsys, "plot", "StepLR(step_size=3)", "-o", str(tmp_path / "file" / "c.png"))


def test_cli_an_output_that_is_a_folder_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "c.png").mkdir()
    assert "is a folder" in cli_usage_error(capsys, "plot", "StepLR(step_size=3)", "-o", str(tmp_path / "c.png"))


@pytest.mark.parametrize("fmt, name", [("png", "c.svg"), ("png", "c"), ("csv", "c.png")])
def test_cli_an_output_name_not_ending_in_the_formats_extension_is_a_usage_error(capsys, tmp_path, fmt, name):
    line = cli_usage_error(capsys, "plot", "StepLR(step_size=3)", "--format", fmt, "-o", str(tmp_path / name))
    assert f"must end in .{fmt}" in line


def test_cli_a_failed_write_is_a_usage_error(capsys, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(plot, "to_png", refuse)
    line = cli_usage_error(capsys, "plot", "StepLR(step_size=3)", "-o", str(tmp_path / "c.png"))
    assert "cannot write" in line and "Permission denied" in line


@pytest.mark.parametrize("write", [plot.to_csv, lambda curves: plot.to_png(curves, "unused.png")])
def test_no_curves_is_a_value_error(write):
    with pytest.raises(ValueError, match="no curves"):
        write([])


def test_curves_of_different_lengths_are_a_value_error_not_a_truncated_csv():
    with pytest.raises(ValueError, match="different lengths"):
        plot.to_csv([plot.Curve("a", [0.1, 0.2], None), plot.Curve("b", [0.1], None)])


def test_values_matplotlib_cannot_draw_are_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="cannot draw these values"):
        plot.to_png([plot.Curve("a", [1e308, -1e308], None)], tmp_path / "c.png")


def test_to_png_writes_png_whatever_the_extension(tmp_path):
    plot.to_png([plot.Curve("a", [0.1, 0.2], None)], tmp_path / "c.svg")
    assert (tmp_path / "c.svg").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_a_custom_schedule_raising_other_than_value_error_is_a_usage_error(capsys, monkeypatch):
    def overflowing(steps):
        raise OverflowError("too big")

    monkeypatch.setitem(plot.CUSTOM, "overflowing", overflowing)
    assert cli_usage_error(capsys, "plot", "overflowing(3)").endswith("overflowing: OverflowError: too big")


@pytest.mark.parametrize("argv", [["--num-iter", "0"], ["--num-iter", "10000000000"], ["--start-lr", "nan"],
                                  ["--end-lr", "inf"], ["--start-lr", "1", "--end-lr", "0.1"],
                                  ["-o", "/nonexistent-folder/lr.png"], ["-o", "lr.svg"]])
def test_cli_find_lr_bad_options_are_usage_errors(capsys, argv):
    cli_usage_error(capsys, "find-lr", "--demo", *argv)


def test_a_custom_curve_goes_on_in_python_past_the_engines_exact_ints():
    schedule = S.step() ** 5 * 1e-30  # step**5 passes 2**53 at step 1553; Python's int goes on
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = schedx_lr.ScheduleLR(opt, schedule)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(1599):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert plot.custom_curve("x", schedule, 1600, 0.1).lrs == lrs


@pytest.mark.parametrize("text, steps", [("StepLR(step_size=0)", 2), ("CosineAnnealingLR(T_max=0)", 3),
                                         ("PolynomialLR(total_iters=1, power=-1)", 3)])
def test_a_short_curve_of_a_schedule_torch_cannot_step_has_no_curve(text, steps):
    expected = torch_failure(text, steps)
    with pytest.raises(ValueError, match=f"raises at step 1: {type(expected).__name__}: "):
        plot.curve(text, steps)


def test_cli_a_log_axis_without_a_positive_lr_is_a_usage_error(capsys, tmp_path):
    line = cli_usage_error(capsys, "plot", "StepLR(step_size=3)", "--lr", "0", "--log", "-o", str(tmp_path / "c.png"))
    assert "log LR axis needs a positive LR" in line


def test_cli_a_failed_write_to_stdout_is_a_usage_error(capsys, monkeypatch):
    def refuse(text):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout.write", refuse)
    line = cli_usage_error(capsys, "plot", "StepLR(step_size=3)", "--format", "csv")
    assert line.endswith("cannot write to stdout: Broken pipe")
