"""``python -m schedx``: tools for choosing a schedule.

    python -m schedx plot "OneCycleLR(max_lr=0.1, total_steps=1000)" \\
        "CosineAnnealingLR(T_max=1000, eta_min=1e-5)" --lr 0.1 --steps 1000 -o curves.png
    python -m schedx plot "StepLR(step_size=30, gamma=0.1)" --steps 90 --format csv
"""
from __future__ import annotations

import argparse
import sys

from . import plot


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schedx", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plot_parser = commands.add_parser(
        "plot",
        help="draw schedules over a number of steps (PNG), or print their values (CSV)",
        description="Each SCHEDULE is a schedx scheduler with keyword arguments, e.g. "
        "'CosineAnnealingLR(T_max=1000, eta_min=1e-5)'; known: " + ", ".join(sorted(plot.PLOTTABLE)),
    )
    plot_parser.add_argument("schedules", nargs="+", metavar="SCHEDULE")
    plot_parser.add_argument("--lr", type=float, default=0.1, help="the optimizer's LR (default 0.1)")
    plot_parser.add_argument("--steps", type=int, default=1000, help="steps to draw (default 1000)")
    plot_parser.add_argument("-o", "--output", help="output file (PNG: schedules.png; CSV: stdout)")
    plot_parser.add_argument("--format", choices=("png", "csv"), default="png")
    plot_parser.add_argument("--log", action="store_true", help="log scale for the LR axis")
    args = parser.parse_args(argv)
    return _plot(args, plot_parser)


if __name__ == "__main__":
    sys.exit(main())
