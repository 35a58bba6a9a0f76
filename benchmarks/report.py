"""Turn bench_cpu.py's pytest-benchmark JSON into benchmarks/results/cpu.md and cpu-speedup.png.

    .venv/bin/python benchmarks/report.py benchmarks/results/cpu.json [--out-dir benchmarks/results]

Every time is the median over rounds of the mean step time within a round, in µs per step(). The
report has: the run's date, torch, Python and machine; torch/schedx speed-ups per scheduler and N;
schedx's fixed cost (the N=1 step) and per-group marginal cost ((t(10,000) - t(1,000)) / 9,000)
next to the floor's (benchmarks/floor.c); and the targets checked row by row.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent

NS = (1, 10, 100, 1_000, 10_000)
# Display order: torch's classes in torch's order, SWALR, then the composites.
ORDER = [
    "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
    "ExponentialLR", "SequentialLR", "PolynomialLR", "CosineAnnealingLR", "ChainedScheduler",
    "ReduceLROnPlateau", "CyclicLR", "OneCycleLR", "CosineAnnealingWarmRestarts", "SWALR",
    "WarmupCosine", "Chained3",
]  # fmt: skip
COMPOSITES = {
    "WarmupCosine": "SequentialLR(LinearLR warm-up → CosineAnnealingLR)",
    "Chained3": "ChainedScheduler(ConstantLR, ExponentialLR, CosineAnnealingLR)",
}

# The targets (the "numbers to beat").
FLOOR_FACTOR = 1.5  # per-group marginal cost within 1.5x the floor's...
MOMENTUM_WRITERS = {"CyclicLR": 2, "OneCycleLR": 2}  # ...of 2 floors for those writing momentum too
MAY_BEAT_FLOOR = {"StepLR", "ConstantLR", "MultiStepLR"}  # most steps need not write at all
N1_MAX_US = 0.5
N1_MIN_RATIO = 3.0
RATIO_AT_100 = 8.0
RATIO_AT_100_PYTHON_CALLBACKS = 2.0  # LambdaLR / MultiplicativeLR call a Python lambda per group
PYTHON_CALLBACKS = {"LambdaLR", "MultiplicativeLR"}
RATIO_AT_1000 = {
    "OneCycleLR": 20.0,
    "SequentialLR": 15.0,
    "ChainedScheduler": 15.0,
    "WarmupCosine": 15.0,
    "Chained3": 15.0,
}


def load(path: Path):
    """{scheduler: {impl: {n: median seconds}}} and the run's metadata."""
    data = json.loads(path.read_text())
    times: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        times[info["scheduler"]][info["impl"]][int(info["n"])] = bench["stats"]["median"]
    return times, data


def us(seconds: float) -> str:
    value = seconds * 1e6
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fixed_and_marginal(per_n: dict[int, float]) -> tuple[float, float]:
    """(N=1 step in seconds, per-group marginal cost in seconds)."""
    return per_n[1], (per_n[10_000] - per_n[1_000]) / 9_000


def cpu_line(machine: dict) -> str:
    model = machine.get("cpu_model") or (machine.get("cpu") or {}).get("brand_raw") or "unknown CPU"
    cores = machine.get("cpu_cores") or (machine.get("cpu") or {}).get("count") or "?"
    threads = machine.get("torch_threads")
    extra = f", torch threads {threads}" if threads else ""
    return f"{model}, {cores} cores{extra} ({machine.get('system', '')} {machine.get('release', '')})"


def header(data: dict) -> list[str]:
    machine = data.get("machine_info", {})
    commit = data.get("commit_info", {})
    commit_text = ""
    if commit.get("id"):
        commit_text = f"{commit['id'][:10]}{' (with uncommitted changes)' if commit.get('dirty') else ''}"
    lines = [
        "# schedx CPU benchmark: `step()` against torch.optim.lr_scheduler",
        "",
        f"- date: {data.get('datetime', '?')}",
        f"- torch {machine.get('torch_version', '?')}, schedx {machine.get('schedx_version', '?')}, "
        f"Python {machine.get('python_version', '?')} ({machine.get('python_implementation', '')})",
        f"- machine: {cpu_line(machine)}",
    ]
    if "loadavg_start" in machine:
        lines.append(
            f"- load average (1 min) at start / end of the run: "
            f"{machine['loadavg_start']:.2f} / {machine.get('loadavg_end', float('nan')):.2f}"
        )
    if commit_text:
        lines.append(f"- commit: {commit_text}")
    lines += [
        "",
        "Times are µs per `step()`: the median over rounds, each round the mean of several consecutive",
        "steps on one scheduler. N is the number of float-LR parameter groups (SGD with momentum, one",
        "tiny parameter per group, distinct base LRs). torch and schedx run the same hyperparameters",
        "(`CASES` in `benchmarks/bench_cpu.py`) on identically configured optimizers in the same run.",
        "*floor* is `benchmarks/floor.c`: a C loop that reads each group's `lr`, multiplies it and",
        "writes a new float back, and nothing else (no schedule, no `_last_lr` list).",
        "Composites: "
        + "; ".join(f"**{name}** = {what}" for name, what in COMPOSITES.items())
        + ".",
        "",
        "Reproduce: `make bench`, i.e. `benchmarks/run.sh`.",
        "",
    ]
    return lines


def ratio_table(times) -> list[str]:
    lines = [
        "## Speed-up, torch / schedx (median step time)",
        "",
        "| scheduler | " + " | ".join(f"N={n:,}" for n in NS) + " |",
        "|---|" + "---:|" * len(NS),
    ]
    for name in schedulers(times):
        t, s = times[name]["torch"], times[name]["schedx"]
        cells = [f"{t[n] / s[n]:.1f}×" if n in t and n in s else "–" for n in NS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def detail_table(times) -> list[str]:
    lines = [
        "## Step time per scheduler and N",
        "",
        "| scheduler | N | torch µs/step | schedx µs/step | torch / schedx |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in schedulers(times):
        t, s = times[name]["torch"], times[name]["schedx"]
        for n in NS:
            if n in t and n in s:
                lines.append(
                    f"| {name} | {n:,} | {us(t[n])} | {us(s[n])} | {t[n] / s[n]:.1f}× |"
                )
    floor = times.get("floor", {}).get("floor", {})
    for n in NS:
        if n in floor:
            lines.append(f"| *floor* | {n:,} | | {us(floor[n])} | |")
    return lines + [""]


def floor_table(times) -> list[str]:
    floor_fixed, floor_marginal = fixed_and_marginal(times["floor"]["floor"])
    lines = [
        "## Fixed and per-group cost, against the floor",
        "",
        "Fixed cost: the step at N=1. Per-group marginal cost: (t(10,000) − t(1,000)) / 9,000.",
        "",
        "| scheduler | schedx fixed µs | floor fixed µs | fixed / floor "
        "| schedx ns/group | floor ns/group | per-group / floor | torch ns/group |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| *floor* | {floor_fixed * 1e6:.2f} | {floor_fixed * 1e6:.2f} | 1.0× "
        f"| {floor_marginal * 1e9:.1f} | {floor_marginal * 1e9:.1f} | 1.0× | |",
    ]
    for name in schedulers(times, complete=True):
        fixed, marginal = fixed_and_marginal(times[name]["schedx"])
        _, torch_marginal = fixed_and_marginal(times[name]["torch"])
        lines.append(
            f"| {name} | {fixed * 1e6:.2f} | {floor_fixed * 1e6:.2f} | {fixed / floor_fixed:.1f}× "
            f"| {marginal * 1e9:.1f} | {floor_marginal * 1e9:.1f} "
            f"| {marginal / floor_marginal:.2f}× | {torch_marginal * 1e9:.0f} |"
        )
    return lines + [""]


def check_targets(times) -> list[tuple[str, str, str, bool]]:
    """(scheduler, target, measured, passed) for every target that applies."""
    rows = []
    _, floor_marginal = fixed_and_marginal(times["floor"]["floor"])
    for name in schedulers(times, complete=True):
        t, s = times[name]["torch"], times[name]["schedx"]
        ratio = {n: t[n] / s[n] for n in NS}

        floors = MOMENTUM_WRITERS.get(name, 1)
        bound = FLOOR_FACTOR * floors
        _, marginal = fixed_and_marginal(s)
        target = f"per-group cost ≤ {bound:g}× floor"
        if floors > 1:
            target += f" ({FLOOR_FACTOR:g} × {floors} floors: writes momentum too)"
        if name in MAY_BEAT_FLOOR:
            target += " (may go below the floor)"
        measured = f"{marginal * 1e9:.1f} ns = {marginal / floor_marginal:.2f}× floor"
        rows.append((name, target, measured, marginal <= bound * floor_marginal))

        fixed = s[1]
        rows.append((
            name,
            f"N=1 step ≤ {N1_MAX_US:g} µs and ≥ {N1_MIN_RATIO:g}× faster than torch",
            f"{fixed * 1e6:.2f} µs, {ratio[1]:.1f}×",
            fixed <= N1_MAX_US * 1e-6 and ratio[1] >= N1_MIN_RATIO,
        ))  # fmt: skip

        needed = RATIO_AT_100_PYTHON_CALLBACKS if name in PYTHON_CALLBACKS else RATIO_AT_100
        rows.append(ratio_target_row(name, ratio, needed, from_n=100))
        if name in RATIO_AT_1000:
            rows.append(ratio_target_row(name, ratio, RATIO_AT_1000[name], from_n=1_000))
    return rows


def ratio_target_row(name: str, ratio: dict[int, float], needed: float, from_n: int):
    """The target "torch / schedx ≥ needed at every N ≥ from_n", as a targets-table row."""
    big = [n for n in NS if n >= from_n]
    return (
        name,
        f"≥ {needed:g}× at N ≥ {from_n:,}",
        " / ".join(f"{ratio[n]:.1f}×" for n in big)
        + " (N=" + " / ".join(f"{n:,}" for n in big) + ")",
        all(ratio[n] >= needed for n in big),
    )


def targets_table(rows) -> list[str]:
    failed = [r for r in rows if not r[3]]
    lines = [
        "## Targets",
        "",
        f"{len(rows) - len(failed)} of {len(rows)} pass, {len(failed)} fail.",
        "",
        "| scheduler | target | measured | result |",
        "|---|---|---|---|",
    ]
    for name, target, measured, passed in rows:
        lines.append(f"| {name} | {target} | {measured} | {'PASS' if passed else '**FAIL**'} |")
    lines += [
        "",
        "Notes: LambdaLR and MultiplicativeLR call the user's Python lambda once per group, as torch",
        "does; ChainedScheduler and its composites make one pass per child, and every schedx step also",
        "builds the `_last_lr` list, which the floor does not. The per-group target still compares",
        "each of them with a single floor pass.",
        "",
    ]
    return lines


def schedulers(times, complete: bool = False) -> list[str]:
    """The schedulers measured with both implementations (at every N if ``complete``), in display
    order."""
    names = [n for n in times if "torch" in times[n] and "schedx" in times[n]]
    if complete:
        names = [n for n in names if all(set(NS) <= set(times[n][impl]) for impl in times[n])]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def plot(times, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    colors = plt.get_cmap("tab20").colors
    markers = "osD^v<>phX*"
    for i, name in enumerate(schedulers(times)):
        t, s = times[name]["torch"], times[name]["schedx"]
        ns = [n for n in NS if n in t and n in s]
        ax.plot(
            ns,
            [t[n] / s[n] for n in ns],
            marker=markers[i % len(markers)],
            color=colors[i % len(colors)],
            linestyle="-" if i < 10 else "--",
            label=COMPOSITES.get(name, name),
        )
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(NS, [f"{n:,}" for n in NS])
    low, high = ax.get_ylim()
    ticks = [t for t in (0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200) if low <= t <= high]
    ax.set_yticks(ticks, [f"{t:g}×" for t in ticks])
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("parameter groups N")
    ax.set_ylabel("speed-up, torch step / schedx step (median)")
    ax.set_title("schedx vs torch.optim.lr_scheduler, CPU, float LRs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark JSON from bench_cpu.py")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    times, data = load(args.json)
    if not set(NS) <= set(times.get("floor", {}).get("floor", {})):
        parser.error(f"{args.json} lacks the floor at some N (run test_floor too)")
    rows = check_targets(times)
    markdown = (
        header(data)
        + ratio_table(times)
        + floor_table(times)
        + targets_table(rows)
        + detail_table(times)
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md_path = args.out_dir / "cpu.md"
    md_path.write_text("\n".join(markdown))
    png_path = args.out_dir / "cpu-speedup.png"
    plot(times, png_path)
    failed = sum(not r[3] for r in rows)
    print(f"wrote {md_path} and {png_path}: {len(rows) - failed} of {len(rows)} targets pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
