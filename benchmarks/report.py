"""Turn bench_cpu.py's pytest-benchmark JSON (and callgrind.py's profile, when there is one) into
benchmarks/results/cpu.md and cpu-speedup.png.

    .venv/bin/python benchmarks/report.py benchmarks/results/cpu.json \\
        [--profile benchmarks/results/callgrind.json] [--out-dir benchmarks/results]

Every time is a median over the rounds of one interleaved measurement (torch, schedx and the floor
measured together for one scheduler and N), in µs or ns per step(). The report has: the run's date,
torch, Python and machine; torch/schedx speed-ups per scheduler and N; the targets checked row by
row, with how far each failing one is; schedx's fixed cost (the N=1 step) and per-group marginal
cost ((t(10,000) - t(1,000)) / 9,000) next to the floor's (benchmarks/floor.c) from the same
measurements; the callgrind profile; and every step time.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
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
    "WarmupCosine", "Chained3", "HF-linear", "HF-cosine", "HF-cosine_with_min_lr",
]  # fmt: skip
COMPOSITES = {
    "WarmupCosine": "SequentialLR(LinearLR warm-up → CosineAnnealingLR)",
    "Chained3": "ChainedScheduler(ConstantLR, ExponentialLR, CosineAnnealingLR)",
}
# Schedulers a training stack builds: torch's from the framework's call, schedx's from the same call
# under schedx.patch().
STACK_CASES = {
    "HF-linear": 'transformers\' `get_scheduler("linear")`',
    "HF-cosine": 'transformers\' `get_scheduler("cosine")`',
    "HF-cosine_with_min_lr": 'transformers\' `get_scheduler("cosine_with_min_lr", min_lr_rate=0.1)`',
}

# The targets (the "numbers to beat").
FLOOR_FACTOR = 1.5  # per-group marginal cost within 1.5x the floor's...
MOMENTUM_WRITERS = {"CyclicLR": 2, "OneCycleLR": 2}  # ...of 2 floors for those writing momentum too
MAY_BEAT_FLOOR = {"StepLR", "ConstantLR", "MultiStepLR"}  # most steps need not write at all
N1_MAX_NS = 500.0
N1_MIN_RATIO = 3.0
RATIO_AT_100 = 8.0
RATIO_AT_100_PYTHON_CALLBACKS = 2.0  # LambdaLR / MultiplicativeLR call a Python lambda per group
PYTHON_CALLBACKS = {"LambdaLR", "MultiplicativeLR", "HF-linear", "HF-cosine", "HF-cosine_with_min_lr"}
RATIO_AT_1000 = {
    "OneCycleLR": 20.0,
    "SequentialLR": 15.0,
    "ChainedScheduler": 15.0,
    "WarmupCosine": 15.0,
    "Chained3": 15.0,
}

Times = dict  # {scheduler: {impl: {n: {"median", "q1", "q3"} in ns per step}}}


def load(path: Path) -> tuple[Times, dict]:
    """The per-implementation results of every measurement, and the run's metadata."""
    data = json.loads(path.read_text())
    times: Times = defaultdict(lambda: defaultdict(dict))
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        for impl in ("torch", "schedx", "floor"):
            times[info["scheduler"]][impl][int(info["n"])] = info["ns_per_step"][impl]
    return times, data


def median(times: Times, name: str, impl: str) -> dict[int, float]:
    """{n: median ns per step} of one implementation in ``name``'s measurements."""
    return {n: result["median"] for n, result in times[name][impl].items()}


def us(ns: float) -> str:
    value = ns / 1e3
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fixed_and_marginal(per_n: dict[int, float]) -> tuple[float, float]:
    """(N=1 step, per-group marginal cost), in ns."""
    return per_n[1], (per_n[10_000] - per_n[1_000]) / 9_000


def schedulers(times: Times, complete: bool = False) -> list[str]:
    """The schedulers measured (at every N if ``complete``), in display order."""
    names = [name for name in times if not complete or set(NS) <= set(times[name]["schedx"])]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


# --------------------------------------------------------------------------------------------
# Header and timing tables
# --------------------------------------------------------------------------------------------


def cpu_line(machine: dict) -> str:
    model = machine.get("cpu_model") or (machine.get("cpu") or {}).get("brand_raw") or "unknown CPU"
    cores = machine.get("cpu_cores") or (machine.get("cpu") or {}).get("count") or "?"
    threads = machine.get("torch_threads")
    extra = f", torch threads {threads}" if threads else ""
    return f"{model}, {cores} cores{extra} ({machine.get('system', '')} {machine.get('release', '')})"


def header(data: dict) -> list[str]:
    machine = data.get("machine_info", {})
    commit = data.get("commit_info", {})
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
    if commit.get("id"):
        dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
        lines.append(f"- commit: {commit['id'][:10]}{dirty}")
    if machine.get("schedx_fingerprint"):
        uncommitted = machine.get("schedx_uncommitted")
        changes = f"; uncommitted engine files: {', '.join(uncommitted)}" if uncommitted else ""
        lines.append(f"- schedx build measured: fingerprint {machine['schedx_fingerprint']} "
                     f"(sha256 of schedx/*.py and its compiled modules){changes}")  # fmt: skip
    plan = sorted({(b["extra_info"]["n"], b["extra_info"]["rounds"], b["extra_info"]["steps_per_round"])
                   for b in data["benchmarks"]})  # fmt: skip
    lines += [
        "",
        "N is the number of float-LR parameter groups (SGD with momentum, one tiny parameter per",
        "group, distinct base LRs). torch and schedx run the same hyperparameters (`CASES` in",
        "`benchmarks/workload.py`) on identically configured optimizers. *floor* is",
        "`benchmarks/floor.c`: a C loop that reads each group's `lr`, multiplies it and writes a new",
        "float back, and nothing else (no schedule, no `_last_lr` list). Composites: "
        + "; ".join(f"**{name}** = {what}" for name, what in COMPOSITES.items())
        + ". A training stack's schedulers ("
        + "; ".join(f"**{name}** = {what}" for name, what in STACK_CASES.items())
        + "): torch's LambdaLR as the framework builds it, against the same call under"
        " `schedx.patch()`, schedx's LambdaLR.",
        "",
        "**How it is measured.** For each scheduler and N, one interleaved measurement: every round",
        "runs k consecutive `step()` calls of torch's scheduler, k of schedx's, k calls of the floor",
        "and k iterations of an empty loop, one after another in a random order (seeded),",
        "each loop timed as a whole with `time.perf_counter_ns`. Every time below is the median over",
        "the rounds of that one measurement, per step, less the empty loop's; so torch, schedx and",
        "the floor of one row saw the same machine, and the ratios do not carry the drift of these",
        "shared cores from one moment to the next. Rounds × k: "
        + ", ".join(f"N={n:,}: {rounds} × {k}" for n, rounds, k in plan)
        + " (after 4 warm-up rounds).",
        "",
        "Reproduce: `make bench`, i.e. `benchmarks/run.sh`.",
        "",
    ]
    return lines


def ratio_table(times: Times) -> list[str]:
    lines = [
        "## Speed-up, torch / schedx (medians of one interleaved measurement)",
        "",
        "| scheduler | " + " | ".join(f"N={n:,}" for n in NS) + " |",
        "|---|" + "---:|" * len(NS),
    ]
    for name in schedulers(times):
        t, s = median(times, name, "torch"), median(times, name, "schedx")
        cells = [f"{t[n] / s[n]:.1f}×" if n in s else "–" for n in NS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def floor_table(times: Times) -> list[str]:
    names = schedulers(times, complete=True)
    if not names:  # a partial run (pytest -k): no scheduler measured at every N
        return []
    floors = [fixed_and_marginal(median(times, name, "floor")) for name in names]
    lines = [
        "## Fixed and per-group cost, against the floor",
        "",
        "Fixed cost: the step at N=1. Per-group marginal cost: (t(10,000) − t(1,000)) / 9,000. The",
        "floor is the one measured with each scheduler, in the same rounds. Over the "
        f"{len(names)} measurements of this run it read "
        f"{spread([fixed / 1e3 for fixed, _ in floors], 2)} µs a call and "
        f"{spread([marginal for _, marginal in floors], 1)} ns a group (median, and the range).",
        "",
        "| scheduler | schedx fixed µs | floor fixed µs | fixed / floor "
        "| schedx ns/group | floor ns/group | per-group / floor | torch ns/group |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (floor_fixed, floor_marginal) in zip(names, floors):
        fixed, marginal = fixed_and_marginal(median(times, name, "schedx"))
        _, torch_marginal = fixed_and_marginal(median(times, name, "torch"))
        lines.append(
            f"| {name} | {fixed / 1e3:.2f} | {floor_fixed / 1e3:.2f} | {fixed / floor_fixed:.1f}× "
            f"| {marginal:.1f} | {floor_marginal:.1f} "
            f"| {marginal / floor_marginal:.2f}× | {torch_marginal:.0f} |"
        )
    return lines + [""]


def spread(values: list[float], digits: int) -> str:
    """"median (min–max)"."""
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}–{max(values):.{digits}f})")  # fmt: skip


def detail_table(times: Times) -> list[str]:
    lines = [
        "## Step time per scheduler and N",
        "",
        "µs per `step()`; schedx's interquartile range over the rounds in brackets.",
        "",
        "| scheduler | N | torch µs | schedx µs | floor µs | torch / schedx | schedx / floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in schedulers(times):
        t, s, f = (times[name][impl] for impl in ("torch", "schedx", "floor"))
        for n in NS:
            if n in s:
                spread = f"({us(s[n]['q1'])}–{us(s[n]['q3'])})"
                lines.append(
                    f"| {name} | {n:,} | {us(t[n]['median'])} | {us(s[n]['median'])} {spread} "
                    f"| {us(f[n]['median'])} | {t[n]['median'] / s[n]['median']:.1f}× "
                    f"| {s[n]['median'] / f[n]['median']:.1f}× |"
                )
    return lines + [""]


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def check_targets(times: Times) -> list[tuple[str, str, str, float]]:
    """(scheduler, target, measured, shortfall) for every target that applies. The shortfall is
    the factor by which schedx's time must shrink to pass; at most 1 means it passes."""
    rows = []
    for name in schedulers(times, complete=True):
        t, s = median(times, name, "torch"), median(times, name, "schedx")
        ratio = {n: t[n] / s[n] for n in NS}
        fixed, marginal = fixed_and_marginal(s)
        floor_fixed, floor_marginal = fixed_and_marginal(median(times, name, "floor"))

        floors = MOMENTUM_WRITERS.get(name, 1)
        bound = FLOOR_FACTOR * floors
        target = f"per-group cost ≤ {bound:g}× floor"
        if floors > 1:
            target += f" ({FLOOR_FACTOR:g} × {floors} floors: writes momentum too)"
        if name in MAY_BEAT_FLOOR:
            target += " (may go below the floor)"
        measured = f"{marginal:.1f} ns = {marginal / floor_marginal:.2f}× floor ({floor_marginal:.1f} ns)"
        rows.append((name, target, measured, marginal / (bound * floor_marginal)))

        rows.append((
            name,
            f"N=1 step ≤ {N1_MAX_NS / 1e3:g} µs and ≥ {N1_MIN_RATIO:g}× faster than torch",
            f"{fixed / 1e3:.2f} µs (floor {floor_fixed / 1e3:.2f} µs), {ratio[1]:.1f}×",
            max(fixed / N1_MAX_NS, N1_MIN_RATIO / ratio[1]),
        ))  # fmt: skip

        needed = RATIO_AT_100_PYTHON_CALLBACKS if name in PYTHON_CALLBACKS else RATIO_AT_100
        rows.append(ratio_target_row(name, ratio, needed, from_n=100))
        if name in RATIO_AT_1000:
            rows.append(ratio_target_row(name, ratio, RATIO_AT_1000[name], from_n=1_000))
    return rows


def ratio_target_row(name: str, ratio: dict[int, float], needed: float, from_n: int):
    """The target "torch / schedx ≥ needed at every N ≥ from_n", as a targets row."""
    big = [n for n in NS if n >= from_n]
    return (
        name,
        f"≥ {needed:g}× at N ≥ {from_n:,}",
        " / ".join(f"{ratio[n]:.1f}×" for n in big)
        + " (N=" + " / ".join(f"{n:,}" for n in big) + ")",
        needed / min(ratio[n] for n in big),
    )


def targets_table(rows) -> list[str]:
    failed = [row for row in rows if row[3] > 1]
    lines = [
        "## Targets",
        "",
        f"{len(rows) - len(failed)} of {len(rows)} pass, {len(failed)} fail. *Short by*: how many",
        "times faster schedx's step would have to be to pass (for the N=1 target, the larger of its",
        "two conditions; for a ratio target, at the worst N). The N=1 bound is absolute, so it moves",
        "with the machine's speed at the time; the floor's N=1 call, measured alongside, shows it.",
        "",
        "| scheduler | target | measured | result | short by |",
        "|---|---|---|---|---:|",
    ]
    for name, target, measured, shortfall in rows:
        result, short = ("PASS", "") if shortfall <= 1 else ("**FAIL**", f"{shortfall:.2f}×")
        lines.append(f"| {name} | {target} | {measured} | {result} | {short} |")
    lines += [
        "",
        "Notes: every schedx step also builds the `_last_lr` list, which the floor does not. The",
        "benchmark's LambdaLR and MultiplicativeLR lambdas are traced into engine schedules (a lambda",
        "that cannot be traced is called once per group, as torch does). The per-group target",
        "compares every scheduler, composites included, with a single floor pass. The profile below",
        "says where the rest goes.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------------------------
# The callgrind profile
# --------------------------------------------------------------------------------------------


def per_group(per_n: dict) -> float:
    """Per-group instructions from the profile's N=100 and N=1,000."""
    return (per_n["1000"] - per_n["100"]) / 900


def short_function(name: str) -> str:
    """``f [object]`` as the report shows it: C++ scopes and arguments dropped, the object named
    only when it is not the interpreter (libpython)."""
    function, obj = re.fullmatch(r"(.*) \[(.*)\]", name).groups()
    function = re.sub(r" \[clone [^]]*\]$", "", function)
    # Drop bracketed groups, innermost first: arguments, template arguments, lambda names.
    while (shorter := re.sub(r"\([^()]*\)|<[^<>]*>|\{[^{}]*\}", "", function)) != function:
        function = shorter
    function = function.split("::")[-1]
    if obj.startswith("libpython"):
        return f"`{function}`"
    return f"`{function}` ({'schedx engine' if obj.startswith('_C.') else obj.split('.')[0]})"


def profile_section(profile: dict | None, timed_fingerprint: str | None) -> list[str]:
    lines = ["## Where the time goes: instructions per step (callgrind)", ""]
    if profile is None:
        return lines + ["No profile in this run (valgrind not found).", ""]
    if profile["schedx_fingerprint"] != timed_fingerprint:
        lines += [
            f"**Warning: the profile counted schedx build {profile['schedx_fingerprint']}, the "
            f"timings above build {timed_fingerprint}: the engine changed between them.**",
            "",
        ]
    ips, engine = profile["instructions_per_step"], profile["schedx_engine_instructions_per_step"]
    floor = ips["floor"]
    lines += [
        f"{profile['valgrind']}, {profile['datetime'][:19]}Z: `benchmarks/callgrind.py` counts the",
        f"instructions of steps {profile['warmup_steps'] + 1}–"
        f"{profile['warmup_steps'] + profile['steps']} of each scheduler (the same steps at every",
        "N), less the empty loop's, with the cyclic GC off, each count right after uncounted steps of",
        "the same class (so the interpreter's bytecode is specialized for it, as in a program that",
        "uses that class). Instruction counts do not drift with the load as times do; they are not",
        "times either (a dict lookup and an interpreter dispatch cost different ns per",
        "instruction). *Fixed*: instructions per `step()` at N=1. *Per group*: (I(1,000) − I(100))",
        "/ 900. *In engine*: inside schedx's compiled engine (`schedx/_C`, what it calls included);",
        "the rest of schedx's count is its Python layer.",
        "",
        "| scheduler | torch fixed | schedx fixed | in engine | schedx / floor "
        "| torch per group | schedx per group | in engine | schedx / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| *floor* | | {floor['1']:,.0f} | | 1.0× | | {per_group(floor):,.0f} | | 1.0× |",
    ]
    for name in sorted(engine, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n)):
        t, s, e = ips[name]["torch"], ips[name]["schedx"], engine[name]
        lines.append(
            f"| {name} | {t['1']:,.0f} | {s['1']:,.0f} | {e['1']:,.0f} | {s['1'] / floor['1']:.1f}× "
            f"| {per_group(t):,.0f} | {per_group(s):,.0f} | {per_group(e):,.0f} "
            f"| {per_group(s) / per_group(floor):.2f}× |"
        )
    python_share = [1 - engine[name]["1"] / ips[name]["schedx"]["1"] for name in engine]
    lines += [
        "",
        f"At N=1, {statistics.median(python_share):.0%} of schedx's instructions (median over the "
        f"schedulers; {min(python_share):.0%}–{max(python_share):.0%}) are in its Python layer, "
        "outside the engine. The functions with the most self instructions per N=1 step (all in "
        "the interpreter, libpython, unless marked; the attribution is callgrind's, as "
        "callgrind_annotate shows it, which books ReduceLROnPlateau's bytecode under "
        "`PyObject_Vectorcall` rather than `_PyEval_EvalFrameDefault`):",
        "",
        "| scheduler | schedx N=1 | top functions, self instructions per step |",
        "|---|---:|---|",
    ]
    for name, top in profile["schedx_top_functions_n1"].items():
        cells = " · ".join(f"{short_function(f)} {cost:,.0f}" for f, cost in top)
        lines.append(f"| {name} | {ips[name]['schedx']['1']:,.0f} | {cells} |")
    return lines + [""]


# --------------------------------------------------------------------------------------------
# Plot, and main
# --------------------------------------------------------------------------------------------


def plot(times: Times, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    colors = plt.get_cmap("tab20").colors
    markers = "osD^v<>phX*"
    for i, name in enumerate(schedulers(times)):
        t, s = median(times, name, "torch"), median(times, name, "schedx")
        ns = [n for n in NS if n in s]
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
    parser.add_argument("--profile", type=Path, default=HERE / "results" / "callgrind.json",
                        help="callgrind.py's output (left out of the report when missing)")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    times, data = load(args.json)
    profile = json.loads(args.profile.read_text()) if args.profile.exists() else None
    rows = check_targets(times)
    markdown = (
        header(data)
        + ratio_table(times)
        + targets_table(rows)
        + floor_table(times)
        + profile_section(profile, data["machine_info"].get("schedx_fingerprint"))
        + detail_table(times)
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md_path = args.out_dir / "cpu.md"
    md_path.write_text("\n".join(markdown))
    png_path = args.out_dir / "cpu-speedup.png"
    plot(times, png_path)
    failed = sum(row[3] > 1 for row in rows)
    print(f"wrote {md_path} and {png_path}: {len(rows) - failed} of {len(rows)} targets pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
