"""Where the time goes: instructions per ``step()`` under valgrind's callgrind, for the report.

    .venv/bin/python benchmarks/callgrind.py [--out benchmarks/results/callgrind.json]

Instruction counts do not drift with the load on these shared cores the way times do, so they give
the fixed cost of a call and the cost of a group exactly. For every case of ``workload.py`` and
N in {1, 100, 1,000}, torch's and schedx's schedulers run steps 1-10 uncounted, then steps 11-30
counted (the same steps at every N, so StepLR's decays, MultiStepLR's milestone and
ReduceLROnPlateau's reduction fall alike into every window), each right after 100 uncounted steps
of another scheduler of the same class (see PRIME_STEPS); the floor (``floor.c``) runs 20 calls.
Every region is counted once with 0 steps and once with 20, and the empty loop likewise, so the
cost of entering and leaving a region and the loop's own iterations cancel:

    instructions per step = ((I(20 steps) - I(0 steps)) - (I(empty, 20) - I(empty, 0))) / 20

From those: the fixed cost (N=1) and the per-group cost ((I(1,000) - I(100)) / 900), and, for
schedx: the instructions spent inside its compiled engine (calls into schedx/_C*.so, callees
included), the rest being its Python layer; and at N=1, the functions where the instructions go
(self cost, as callgrind_annotate lists them).

This script runs itself under ``valgrind --tool=callgrind`` (``--inside``): the imports and the
set-up of every scheduler run uninstrumented (torch's import alone takes 90 s instrumented), then
``callgrind_ctl.c``'s client requests start instrumentation and count and dump each region. The
cyclic garbage collector is off while counting, so a collection that falls into one window and not
another does not skew a difference (the timing benchmark keeps it on). Takes about a minute and a
half here.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from workload import (
    CASES,
    HERE,
    build_c_module,
    empty_loop,
    floor_loop,
    scheduler_loop,
    schedx_fingerprint,
)

PROFILE_NS = (1, 100, 1_000)
WARMUP_STEPS = 10  # steps 1-10: past the warm-ups of ConstantLR and SequentialLR's first child
STEPS = 20  # steps 11-30: two StepLR decays, one MultiStepLR milestone, one plateau reduction
# Uncounted steps of the same class right before each count. CPython specializes bytecode for the
# types it sees; code shared between classes (schedx's and torch's base classes, the loop) that ran
# for other classes last misses and stays on its generic path until ~50 misses re-specialize it.
# Without this, StepLR's N=1 step counted 7,100 instructions after the other cases ran, 4,100 alone.
PRIME_STEPS = 100
TOP_FUNCTIONS = 6
IMPLS = ("torch", "schedx")


# --------------------------------------------------------------------------------------------
# Inside valgrind: set everything up, then count each region
# --------------------------------------------------------------------------------------------


def region(label: str, k: int) -> str:
    return f"{label} k={k}"


def count(ctl, label: str, loop) -> None:
    """Dump ``loop(0)`` and ``loop(STEPS)``, each as its own region."""
    for k in (0, STEPS):
        ctl.begin()
        loop(k)
        ctl.end(region(label, k))


def measure_inside() -> None:
    ctl, floor = build_c_module("callgrind_ctl"), build_c_module("floor")
    if not ctl.running_on_valgrind():
        sys.exit("callgrind.py --inside must run under valgrind --tool=callgrind")
    loops, primers = {}, {}
    for case in CASES:
        for impl in IMPLS:
            primers[impl, case] = scheduler_loop(impl, case, 1)[0]
            for n in PROFILE_NS:
                loop, _ = scheduler_loop(impl, case, n)
                loop(WARMUP_STEPS)  # first calls (lazy set-up, the interpreter's specialization)
                loops[impl, case, n] = loop
    floors = {n: floor_loop(floor, n)[0] for n in PROFILE_NS}
    for loop in (*floors.values(), empty_loop):
        loop(PRIME_STEPS)

    gc.collect()
    gc.disable()
    print("    callgrind: set-up done; counting", file=sys.stderr, flush=True)
    ctl.start_instrumentation()
    count(ctl, "empty", empty_loop)
    for n, loop in floors.items():
        count(ctl, f"floor N={n}", loop)
    for i, case in enumerate(CASES, 1):
        print(f"    callgrind {i:2}/{len(CASES)}: {case}", file=sys.stderr, flush=True)
        for n in PROFILE_NS:
            for impl in IMPLS:
                primers[impl, case](PRIME_STEPS)
                count(ctl, f"{impl} {case} N={n}", loops[impl, case, n])
    # Skip the interpreter's teardown: instrumented, it takes longer than the counting.
    os._exit(0)


# --------------------------------------------------------------------------------------------
# Outside: run valgrind, read its dumps
# --------------------------------------------------------------------------------------------


def run_valgrind(valgrind: str, out_dir: Path) -> None:
    command = [
        valgrind, "--tool=callgrind", "--quiet", "--instr-atstart=no", "--collect-atstart=no",
        f"--callgrind-out-file={out_dir / 'callgrind.out'}",
        sys.executable, str(Path(__file__).resolve()), "--inside",
    ]  # fmt: skip
    # A fixed string hash: dict probe sequences, and so the counts, repeat from run to run.
    subprocess.run(command, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})


@dataclasses.dataclass
class Profile:
    """One dumped region: self instructions per "function [object]", and the instructions of the
    calls into schedx's engine (schedx/_C*.so) from outside it, callees included."""

    self_cost: dict[str, int]
    engine: int

    @property
    def total(self) -> int:
        return sum(self.self_cost.values())


NAME_LINE = re.compile(r"^(c?ob|fl|fi|fe|c?fn|cf[il])=(?:\((\d+)\))?\s*(.*)$")


def is_engine(obj: str) -> bool:
    path = Path(obj)
    return path.parent.name == "schedx" and path.name.startswith("_C.")


def read_profile(text: str) -> Profile:
    """Parse one callgrind dump (https://valgrind.org/docs/manual/cl-format.html). Cost lines
    after ``fn=`` are that function's self cost, except the line right after ``calls=``, which is
    the inclusive cost of that call. Names are compressed: ``(id) name`` defines, ``(id)`` refers."""
    names: dict[tuple[str, str], str] = {}
    self_cost: dict[str, int] = defaultdict(int)
    engine = positions = 0
    ob = fn = callee_ob = ""
    in_call = False
    for line in text.splitlines():
        if line.startswith("positions:"):
            positions = len(line.split()) - 1
        elif line[:1].isdigit() or line[:1] in "+-*":
            fields = line.split()
            cost = int(fields[positions]) if len(fields) > positions else 0
            if in_call:
                if is_engine(callee_ob or ob) and not is_engine(ob):
                    engine += cost
                in_call, callee_ob = False, ""
            else:
                self_cost[f"{fn} [{Path(ob).name}]"] += cost
        elif line.startswith("calls="):
            in_call = True
        elif match := NAME_LINE.match(line):
            key, ident, name = match.groups()
            table = {"cob": "ob", "cfn": "fn"}.get(key, key if key in ("ob", "fn") else "file")
            if ident is not None:
                name = names.setdefault((table, ident), name) if name else names[table, ident]
            if key == "ob":
                ob = name
            elif key == "fn":
                fn = re.sub(r"'\d+$", "", name)  # "f'2": f called recursively; one function
            elif key == "cob":
                callee_ob = name
    return Profile(dict(self_cost), engine)


def read_dumps(out_dir: Path) -> dict[str, Profile]:
    """{region: Profile} for every region dumped by ``count``."""
    profiles = {}
    for path in out_dir.glob("callgrind.out.*"):
        text = path.read_text()
        label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M).group(1)
        profiles[label] = read_profile(text)
        totals = int(re.search(r"^totals: (\d+)$", text, re.M).group(1))
        assert profiles[label].total == totals, f"{path}: parsed {profiles[label].total} != {totals}"
    return profiles


def per_iteration(profiles: dict[str, Profile], label: str, measure) -> float:
    """``measure(profile)`` per iteration of the loop ``label``."""
    counted = measure(profiles[region(label, STEPS)]) - measure(profiles[region(label, 0)])
    return counted / STEPS


def per_step(profiles: dict[str, Profile], label: str, measure=lambda p: p.total) -> float:
    """``measure(profile)`` per step of ``label``: its loop's, less the empty loop's."""
    return per_iteration(profiles, label, measure) - per_iteration(profiles, "empty", measure)


def top_functions(profiles: dict[str, Profile], label: str) -> list[tuple[str, float]]:
    """The functions with the most self instructions per step of ``label``."""
    regions = [region(name, k) for name in (label, "empty") for k in (0, STEPS)]
    functions = set().union(*(profiles[r].self_cost for r in regions))
    costs = {f: per_step(profiles, label, lambda p: p.self_cost.get(f, 0)) for f in functions}
    ranked = sorted(costs.items(), key=lambda item: -item[1])
    return [(function, round(cost, 1)) for function, cost in ranked[:TOP_FUNCTIONS]]


def valgrind_version(valgrind: str) -> str:
    return subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()


def profile(valgrind: str) -> dict:
    fingerprint = schedx_fingerprint()
    print("    callgrind: importing torch and setting up every scheduler, uninstrumented (~30 s)",
          file=sys.stderr, flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="schedx-callgrind-") as tmp:
        run_valgrind(valgrind, Path(tmp))
        profiles = read_dumps(Path(tmp))
    instructions: dict = {"floor": {n: per_step(profiles, f"floor N={n}") for n in PROFILE_NS}}
    engine: dict = {}
    for case in CASES:
        instructions[case] = {
            impl: {n: per_step(profiles, f"{impl} {case} N={n}") for n in PROFILE_NS}
            for impl in IMPLS
        }
        engine[case] = {
            n: per_step(profiles, f"schedx {case} N={n}", lambda p: p.engine) for n in PROFILE_NS
        }
    return {
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "valgrind": valgrind_version(valgrind),
        "schedx_fingerprint": fingerprint,
        "warmup_steps": WARMUP_STEPS,
        "steps": STEPS,
        "ns": PROFILE_NS,
        "empty_loop_instructions_per_iteration": per_iteration(profiles, "empty", lambda p: p.total),
        "instructions_per_step": instructions,
        "schedx_engine_instructions_per_step": engine,
        "schedx_top_functions_n1": {
            case: top_functions(profiles, f"schedx {case} N=1") for case in CASES
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "callgrind.json")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        measure_inside()
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("==> [bench] valgrind not found: no callgrind profile in the report", file=sys.stderr)
        return 0
    try:  # here, not inside valgrind, where the compiler would run 4x slower
        build_c_module("callgrind_ctl")
        build_c_module("floor")
    except subprocess.CalledProcessError:
        print("==> [bench] could not compile benchmarks/callgrind_ctl.c (is valgrind/callgrind.h "
              "installed?): no callgrind profile in the report", file=sys.stderr)  # fmt: skip
        return 0
    result = profile(valgrind)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
