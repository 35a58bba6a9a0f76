"""``python -m schedx``: tools for choosing a schedule.

    python -m schedx plot "OneCycleLR(max_lr=0.1, total_steps=1000)" \\
        "CosineAnnealingLR(T_max=1000, eta_min=1e-5)" --lr 0.1 --steps 1000 -o curves.png
    python -m schedx plot "StepLR(step_size=30, gamma=0.1)" --steps 90 --format csv
    python -m schedx plot "warmup(500, cosine(steps=9500, end=0.01))" "cosine_with_warmup(500, 10000)"
    python -m schedx find-lr --demo -o lr-range.png
"""
from __future__ import annotations

import argparse
import sys

from . import finder, plot


def _plot(args, parser) -> int:
    try:
        curves = [plot.curve(text, args.steps, args.lr) for text in args.schedules]
    except ValueError as error:
        parser.error(str(error))
    if args.format == "csv":
        text = plot.to_csv(curves)
        if args.output:
            with open(args.output, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0
    output = args.output or "schedules.png"
    plot.to_png(curves, output, log_lr=args.log)
    print(f"wrote {output}: {len(curves)} schedule(s), {args.steps:,} steps")
    return 0


def _find_lr(args, parser) -> int:
    if not args.demo:
        parser.error("find-lr runs on your model from Python (schedx.find_lr); here only --demo")
    model, optimizer, loss_fn, batches = finder.demo_problem()
    result = finder.find_lr(model, optimizer, loss_fn, batches, start_lr=args.start_lr,
                            end_lr=args.end_lr, num_iter=args.num_iter, mode=args.mode)
    print(f"suggested lr: {result.suggestion if result.suggestion is None else f'{result.suggestion:.3g}'}")
    print(f"why: {result.reason}")
    if args.output:
        result.plot(args.output, title="LR range test (demo: MLP on a noisy linear map)")
        print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedx", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plot_parser = commands.add_parser(
        "plot",
        help="draw schedules over a number of steps (PNG), or print their values (CSV)",
        description="Each SCHEDULE is a schedx scheduler with keyword arguments, e.g. "
        "'CosineAnnealingLR(T_max=1000, eta_min=1e-5)', or a custom schedule of schedx.schedules, e.g. "
        "'warmup(500, cosine(steps=9500, end=0.01))'; known: " + plot.known_names(),
    )
    plot_parser.add_argument("schedules", nargs="+", metavar="SCHEDULE")
    plot_parser.add_argument("--lr", type=float, default=0.1, help="the optimizer's LR (default 0.1)")
    plot_parser.add_argument("--steps", type=int, default=1000, help="steps to draw (default 1000)")
    plot_parser.add_argument("-o", "--output", help="output file (PNG: schedules.png; CSV: stdout)")
    plot_parser.add_argument("--format", choices=("png", "csv"), default="png")
    plot_parser.add_argument("--log", action="store_true", help="log scale for the LR axis")
    finder_parser = commands.add_parser(
        "find-lr",
        help="LR range test: sweep the LR, watch the loss, suggest an LR",
        description="The LR range test of schedx.find_lr, on a generated regression problem (--demo).",
    )
    finder_parser.add_argument("--demo", action="store_true", help="run on the generated problem")
    finder_parser.add_argument("--start-lr", type=float, default=1e-5)
    finder_parser.add_argument("--end-lr", type=float, default=10.0)
    finder_parser.add_argument("--num-iter", type=int, default=100)
    finder_parser.add_argument("--mode", choices=("exp", "linear"), default="exp")
    finder_parser.add_argument("-o", "--output", help="write the loss-against-LR plot (PNG) here")
    args = parser.parse_args(argv)
    if args.command == "find-lr":
        return _find_lr(args, finder_parser)
    return _plot(args, plot_parser)


if __name__ == "__main__":
    sys.exit(main())
