"""CPU benchmark: torch's ``scheduler.step()`` against schedx's and the floor, interleaved.

One benchmark per scheduler case and N in {1, 10, 100, 1,000, 10,000} (the cases, the optimizer
and the loops are in ``workload.py``). Its measurement is *interleaved*: every round runs k
consecutive steps of each of four loops -- torch's scheduler, schedx's, the floor (``floor.c``) and
the empty loop -- in a random order. Each round of each implementation thus sees
the same machine state, and the drift of these shared cores (other work, clock changes) moves the
torch, schedx and floor times together instead of moving their ratios. The results are the
per-implementation medians over the rounds of that one measurement, in ns per step, less the empty
loop's median.

pytest-benchmark is the harness: ``benchmark.pedantic`` runs the warm-up and measured rounds, and its
JSON records the machine, the commit and, in each benchmark's ``extra_info``, the per-implementation
results. Its own ``stats`` time one whole interleaved round (all four loops); report.py does not use
them.

Not part of the test suite (pytest collects ``tests/`` only, and this file does not match
``python_files``). ``make bench`` runs it through ``benchmarks/run.sh``:

    .venv/bin/python -m pytest benchmarks/bench_cpu.py -q -p no:randomly \\
        --benchmark-json=benchmarks/results/cpu.json
    .venv/bin/python benchmarks/report.py benchmarks/results/cpu.json
"""
from __future__ import annotations

import random
import statistics
import sys

import pytest

from workload import MAX_STEPS, NS, TIMED_CASES, build_c_module, empty_loop, floor_loop, scheduler_loop

# N -> (rounds, steps per round, warm-up rounds). A round is long enough that the clock reads are
# negligible (>= 30 µs of schedx steps), short enough that drift within it is small (torch's loop:
# 0.3-30 ms). The whole suite takes under a minute on 2 cores, most of it in torch at N=10,000.
PLAN = {
    1: (100, 100, 4),
    10: (100, 50, 4),
    100: (100, 10, 4),
    1_000: (100, 2, 4),
    10_000: (100, 1, 4),
}
assert all((rounds + warmup) * k <= MAX_STEPS for rounds, k, warmup in PLAN.values())

IMPLS = ("torch", "schedx", "floor")


class Interleaved:
    """One callable for ``benchmark.pedantic``: each call is one round, k steps of every loop, in
    a fresh random order (seeded, so runs repeat it). A fixed or rotated order would have one
    implementation run right after torch's, which sweeps the caches, in most rounds.
    ``ns[name]`` collects each round's loop time."""

    def __init__(self, loops: dict, k: int):
        self.loops, self.k = loops, k
        self.ns: dict[str, list[int]] = {name: [] for name in loops}
        self.order = random.Random(0)

    def __call__(self) -> None:
        names = list(self.loops)
        self.order.shuffle(names)
        for name in names:
            self.ns[name].append(self.loops[name](self.k))

    def ns_per_step(self, skip: int) -> dict:
        """Per implementation: median and quartiles of ns per step over the rounds after the
        first ``skip`` (the warm-up), each less the empty loop's median; and that median."""
        empty = statistics.median(self.ns["empty"][skip:])
        result = {"empty": {"median": round(empty / self.k, 1)}}
        for name in IMPLS:
            per_step = [(ns - empty) / self.k for ns in self.ns[name][skip:]]
            quartiles = statistics.quantiles(per_step, n=4)
            result[name] = {key: round(q, 1) for key, q in zip(("q1", "median", "q3"), quartiles)}
        return result


@pytest.fixture(scope="session")
def floor():
    return build_c_module("floor")


@pytest.mark.parametrize(
    "case, n", [pytest.param(case, n, id=f"{case}-N{n}") for case in TIMED_CASES for n in NS]
)
def test_step(benchmark, floor, progress, case, n):
    rounds, k, warmup = PLAN[n]
    torch_loop, torch_optimizer = scheduler_loop("torch", case, n)
    schedx_loop, schedx_optimizer = scheduler_loop("schedx", case, n)
    floor_steps, floor_optimizer = floor_loop(floor, n)
    measurement = Interleaved(
        {"torch": torch_loop, "schedx": schedx_loop, "floor": floor_steps, "empty": empty_loop}, k
    )
    benchmark.group = f"{case} N={n}"
    benchmark.pedantic(measurement, rounds=rounds, warmup_rounds=warmup)
    result = measurement.ns_per_step(skip=warmup)
    benchmark.extra_info.update(
        scheduler=case, n=n, rounds=rounds, steps_per_round=k, warmup_rounds=warmup,
        ns_per_step=result,
    )  # fmt: skip
    t, s, f = (result[impl]["median"] for impl in IMPLS)
    progress(f"{case} N={n:,}: torch {t / 1e3:,.2f} µs, schedx {s / 1e3:,.2f} µs ({t / s:.1f}×), "
             f"floor {f / 1e3:,.2f} µs")  # fmt: skip

    # Both schedulers did the same work, and the steps were ordinary ones: no LR reached zero or
    # a subnormal number.
    torch_lrs = [group["lr"] for group in torch_optimizer.param_groups]
    assert torch_lrs == [group["lr"] for group in schedx_optimizer.param_groups]
    for lrs in (torch_lrs, [group["lr"] for group in floor_optimizer.param_groups]):
        assert min(lrs) >= sys.float_info.min, f"{case}: an LR fell to {min(lrs)!r}"
