"""``python -m schedx``: tools for choosing a schedule.

    python -m schedx plot "OneCycleLR(max_lr=0.1, total_steps=1000)" \\
        "CosineAnnealingLR(T_max=1000, eta_min=1e-5)" --lr 0.1 --steps 1000 -o curves.png
    python -m schedx plot "StepLR(step_size=30, gamma=0.1)" --steps 90 --format csv
    python -m schedx plot "warmup(500, cosine(steps=9500, end=0.01))" "cosine_with_warmup(500, 10000)"
    python -m schedx find-lr --demo -o lr-range.png
    python -m schedx info          # versions, the CUDA module and its architectures, the GPUs
    python -m schedx --version
"""
from __future__ import annotations

import argparse
import os
import sys

from . import _build, _version, finder, plot

# The demo's sweep at most: a few seconds a thousand batches.
MAX_NUM_ITER = 100_000


def _checked(check, convert):
    """An argparse type: `convert` the text, then `check` the value; their errors as usage errors."""

    def parse(text: str):
        value = convert(text)
        try:
            check(value)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
        return value

    return parse


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not an integer") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a number") from None


def _check_output(path: str, fmt: str) -> None:
    """ValueError unless `path` ends in the format's extension and can be written: checked before the
    work, so that a long computation does not end in a failed write."""
    if not path.lower().endswith(f".{fmt}"):
        raise ValueError(f"output {path!r}: the file is {fmt.upper()}, so its name must end in .{fmt}")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"output {path!r}: no folder {folder!r}")
    if os.path.isdir(path):
        raise ValueError(f"output {path!r} is a folder")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ValueError(f"output {path!r} is not writable")


def _plot(args, parser) -> int:
    output = args.output or (None if args.format == "csv" else "schedules.png")
    if args.format == "png":
        _build.require_matplotlib("plot (PNG; --format csv needs nothing more)")
    try:
        if output is not None:
            _check_output(output, args.format)
        curves = [plot.curve(text, args.steps, args.lr) for text in args.schedules]
        if args.format == "csv":
            text = plot.to_csv(curves)
            if output is None:
                sys.stdout.write(text)
                return 0
            with open(output, "w") as f:
                f.write(text)
        else:
            plot.to_png(curves, output, log_lr=args.log)
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"cannot write {repr(output) if output else 'to stdout'}: {error.strerror or error}")
    print(f"wrote {output}: {len(curves)} schedule(s), {args.steps:,} steps")
    return 0


def _find_lr(args, parser) -> int:
    if not args.demo:
        parser.error("find-lr runs on your model from Python (schedx.find_lr); here only --demo")
    if args.output:
        _build.require_matplotlib("find-lr -o")
    model, optimizer, loss_fn, batches = finder.demo_problem()
    try:
        if args.output:
            _check_output(args.output, "png")
        result = finder.find_lr(model, optimizer, loss_fn, batches, start_lr=args.start_lr,
                                end_lr=args.end_lr, num_iter=args.num_iter, mode=args.mode)
        print(f"suggested lr: {result.suggestion if result.suggestion is None else f'{result.suggestion:.3g}'}")
        print(f"why: {result.reason}")
        if args.output:
            result.plot(args.output, title="LR range test (demo: MLP on a noisy linear map)")
            print(f"wrote {args.output}")
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"cannot write {args.output!r}: {error.strerror or error}")
    return 0


def _num_iter(value: int) -> None:
    if not 2 <= value <= MAX_NUM_ITER:
        raise ValueError(f"must be from 2 to {MAX_NUM_ITER:,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedx", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"schedx {_version.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "info",
        help="versions, the CUDA module and its architectures, the GPUs torch sees",
        description="What this schedx is: its version, torch's (and whether schedx supports it), "
        "Python's, whether the CUDA module was built (its CUDA version and architectures), the GPUs.",
    )
    plot_parser = commands.add_parser(
        "plot",
        help="draw schedules over a number of steps (PNG), or print their values (CSV)",
        description="Each SCHEDULE is a schedx scheduler with keyword arguments, e.g. "
        "'CosineAnnealingLR(T_max=1000, eta_min=1e-5)', or a custom schedule of schedx.schedules, e.g. "
        "'warmup(500, cosine(steps=9500, end=0.01))'; known: " + plot.known_names(),
    )
    plot_parser.add_argument("schedules", nargs="+", metavar="SCHEDULE")
    plot_parser.add_argument("--lr", type=_checked(plot.check_lr, _number), default=0.1,
                             help="the optimizer's LR, finite and >= 0 (default 0.1)")
    plot_parser.add_argument("--steps", type=_checked(plot.check_steps, _integer), default=1000,
                             help=f"steps to draw, 1 to {plot.MAX_STEPS:,} (default 1000)")
    plot_parser.add_argument("-o", "--output",
                             help="output file, .png or .csv as --format (PNG: schedules.png; CSV: stdout)")
    plot_parser.add_argument("--format", choices=("png", "csv"), default="png")
    plot_parser.add_argument("--log", action="store_true", help="log scale for the LR axis")
    finder_parser = commands.add_parser(
        "find-lr",
        help="LR range test: sweep the LR, watch the loss, suggest an LR",
        description="The LR range test of schedx.find_lr, on a generated regression problem (--demo).",
    )
    finder_parser.add_argument("--demo", action="store_true", help="run on the generated problem")
    finder_parser.add_argument("--start-lr", type=_number, default=1e-5)
    finder_parser.add_argument("--end-lr", type=_number, default=10.0)
    finder_parser.add_argument("--num-iter", type=_checked(_num_iter, _integer), default=100,
                               help=f"batches to sweep over, 2 to {MAX_NUM_ITER:,} (default 100)")
    finder_parser.add_argument("--mode", choices=("exp", "linear"), default="exp")
    finder_parser.add_argument("-o", "--output", help="write the loss-against-LR plot (PNG) here")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(_build.format_build_info(_build.build_info()))
        return 0
    if args.command == "find-lr":
        return _find_lr(args, finder_parser)
    return _plot(args, plot_parser)


if __name__ == "__main__":
    sys.exit(main())
