"""GPU benchmark: schedx's device-resident tensor LRs against torch's schedulers with tensor LRs.

For N in {1, 100, 1,000, 10,000} parameter groups whose LRs are one-element CUDA tensors, and three
schedules (CosineAnnealingLR, OneCycleLR, SequentialLR warmup -> cosine), it measures:
  - torch: torch's scheduler step() (Python per group; `.item()` and `fill_` per group): wall time per
    step, synchronized at the end of the run;
  - schedx eager: host time per step() (the Python call that enqueues one launch; no sync inside), and
    the device time per step (CUDA events around many steps);
  - schedx graph: one step() captured in a CUDA graph, device time per replay;
and a captured training step of a small MLP (AdamW, capturable, tensor LRs), replay time with and
without schedx's step() in the graph, and whether the replayed LR trajectory equals eager's.

    python benchmarks/bench_gpu.py [--out-dir benchmarks/results] [--parity-only]

writes gpu-<card>.md and gpu-<card>-parity.md there, stamped with the commit they ran on (git's, or
$SCHEDX_COMMIT where the tree is a copy without .git).

The parity table (device LRs against the float path, in ulp) goes to gpu-<card>-parity.md beside it.

Needs a CUDA GPU and schedx built with its CUDA module (SCHEDX_CUDA=auto builds it when torch has CUDA
and nvcc is found). Progress goes to stderr; the table to the output file and stdout.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.optim.lr_scheduler as torch_lr

import schedx.lr_scheduler as schedx_lr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import tensor_cases  # noqa: E402  (the schedules the tests check, reused for the parity table)

NS = (1, 100, 1_000, 10_000)
SCHEDULES = {
    "CosineAnnealingLR": lambda L, o: L.CosineAnnealingLR(o, T_max=100_000, eta_min=1e-5),
    "OneCycleLR": lambda L, o: L.OneCycleLR(o, max_lr=0.1, total_steps=1_000_000, cycle_momentum=False),
    "SequentialLR": lambda L, o: L.SequentialLR(
        o, [L.LinearLR(o, start_factor=0.01, total_iters=50), L.CosineAnnealingLR(o, T_max=100_000)],
        milestones=[50]),
}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_optimizer(n: int) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1, device="cuda")) for _ in range(n)]
    groups = [{"params": [p], "lr": torch.tensor(0.01 + 1e-6 * k, device="cuda")} for k, p in enumerate(params)]
    return torch.optim.SGD(groups, lr=0.01)


def torch_ms_per_step(name: str, n: int) -> float:
    opt = make_optimizer(n)
    sched = SCHEDULES[name](torch_lr, opt)
    steps = max(3, min(200, 20_000 // n))
    sched.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        sched.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e3


def schedx_eager(name: str, n: int) -> tuple[float, float]:
    """(host µs per step(), device µs per step)."""
    opt = make_optimizer(n)
    sched = SCHEDULES[name](schedx_lr, opt)
    for _ in range(5):
        sched.step()
    torch.cuda.synchronize()
    host = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            sched.step()
        host.append((time.perf_counter() - start) / 200 * 1e6)
        torch.cuda.synchronize()
    return statistics.median(host), device_us_per_call(sched.step, 1000)


def device_us_per_call(fn, calls: int) -> float:
    """GPU time per call of `fn` (CUDA events around `calls` calls), in µs."""
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) / calls * 1e3


def schedx_graph_us(name: str, n: int) -> float:
    opt = make_optimizer(n)
    graph = tensor_cases.captured(SCHEDULES[name](schedx_lr, opt).step)
    for _ in range(10):
        graph.replay()
    return device_us_per_call(graph.replay, 1000)


def mlp(with_scheduler: bool):
    """A 4-layer MLP trained by AdamW (capturable, a tensor LR per parameter) with OneCycleLR: the
    optimizer and the training step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Linear(512, 512), torch.nn.ReLU())]).cuda()
    groups = [{"params": [p], "lr": torch.tensor(1e-3, device="cuda")} for p in model.parameters()]
    opt = torch.optim.AdamW(groups, capturable=True, lr=torch.tensor(1e-3, device="cuda"))
    sched = schedx_lr.OneCycleLR(opt, max_lr=1e-2, total_steps=100_000, cycle_momentum=False)
    x, y = torch.randn(256, 512, device="cuda"), torch.randn(256, 512, device="cuda")

    def train_step():
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if with_scheduler:
            sched.step()

    return opt, train_step


def mlp_training(with_scheduler: bool, replays: int):
    """(µs per replay, LRs after each replay) for the captured MLP training step."""
    opt, train_step = mlp(with_scheduler)
    graph = tensor_cases.captured(train_step)
    lrs = []
    for _ in range(replays):
        graph.replay()
        lrs.append([g["lr"].item() for g in opt.param_groups])
    return device_us_per_call(graph.replay, 500), lrs


def mlp_eager_lrs(steps: int):
    opt, train_step = mlp(True)
    lrs = []
    for _ in range(steps):
        train_step()
        lrs.append([g["lr"].item() for g in opt.param_groups])
    return lrs


def ulps(a: float, b: float) -> int:
    return round(abs(a - b) / math.ulp(b)) if a != b else 0


def parity_rows() -> list[tuple[str, str, int, int]]:
    """(case, dtype, worst ulp of the device's float64 values against the float path, steps that
    differ at all) for every schedule of tests/tensor_cases.py."""
    rows = []
    for case in tensor_cases.CASES:
        for dtype in (torch.float32, torch.float64):
            expected = tensor_cases.float_path(case, dtype)
            opt = tensor_cases.make_optimizer("tensor", dtype, device="cuda")
            sched = case.build(schedx_lr, opt)
            worst = differing = 0
            for i in range(tensor_cases.STEPS):
                tensor_cases.step(case, sched, i)
                shadow = sched.__dict__["_tensor_program"].shadow.tolist()
                d = max(ulps(a, b) for a, b in zip(shadow, expected[i]))
                worst, differing = max(worst, d), differing + (d > 0)
            rows.append((case.name, str(dtype).replace("torch.", ""), worst, differing))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--parity-only", action="store_true", help="skip the timings")
    args = parser.parse_args()
    card = torch.cuda.get_device_name()
    slug = "h100" if "H100" in card else ("h200" if "H200" in card else card.split()[-1].lower())
    out = Path(args.out_dir) / f"gpu-{slug}.md"
    progress("[bench_gpu] parity with the float path ...")
    write_parity(out.with_name(out.stem + "-parity.md"), card)
    if not args.parity_only:
        write_timings(out, card)


def commit() -> str:
    """The commit this tree is: $SCHEDX_COMMIT (a copy of the tree, as a lent GPU machine gets), or git's."""
    if os.environ.get("SCHEDX_COMMIT"):
        return os.environ["SCHEDX_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stamp(card: str) -> str:
    return (f"{datetime.datetime.now().isoformat(timespec='seconds')}; {card}; torch {torch.__version__} "
            f"(CUDA {torch.version.cuda}); commit {commit()}; produced by `python benchmarks/bench_gpu.py`.")


def write_parity(out: Path, card: str) -> None:
    rows = parity_rows()
    lines = [
        f"# schedx on the GPU: device LRs against torch's float path ({card})",
        "",
        stamp(card),
        "",
        f"Every group's LR in double on the device (before the cast to the tensor's dtype) against torch's "
        f"float path, {tensor_cases.STEPS} steps of each schedule in tests/tensor_cases.py "
        f"({tensor_cases.N_GROUPS} groups). The issue's bound is 4 ulp.",
        "",
        "| schedule | LR dtype | worst ulp | steps differing |",
        "|---|---|---:|---:|",
        *[f"| {name} | {dtype} | {worst} | {differing} |" for name, dtype, worst, differing in rows],
    ]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


def write_timings(out: Path, card: str) -> None:
    rows = []
    for name in SCHEDULES:
        for n in NS:
            progress(f"[bench_gpu] {name} N={n}: torch ...")
            t_ms = torch_ms_per_step(name, n)
            progress(f"[bench_gpu] {name} N={n}: schedx eager, graph ...")
            host_us, dev_us = schedx_eager(name, n)
            graph_us = schedx_graph_us(name, n)
            rows.append((name, n, t_ms, host_us, dev_us, graph_us))
            progress(f"    torch {t_ms:.3f} ms | schedx host {host_us:.2f} us, device {dev_us:.2f} us, graph {graph_us:.2f} us")
    progress("[bench_gpu] captured MLP training step ...")
    replays = 50
    base_us, _ = mlp_training(False, 10)
    with_us, captured = mlp_training(True, replays)
    identical = captured == mlp_eager_lrs(replays + 3)[3:]

    lines = [
        f"# schedx on the GPU: {card}",
        "",
        stamp(card),
        "",
        "Tensor LRs on the GPU, one group per LR tensor. torch: torch's own scheduler with tensor LRs "
        "(wall time per step, synchronized at the end). schedx eager: host time of `step()` (enqueues one "
        "kernel, no sync) and device time per step. schedx graph: one `step()` captured in a CUDA graph, "
        "device time per replay. Ratio: torch time / schedx eager host time.",
        "",
        "| scheduler | N | torch ms/step | schedx eager host µs | schedx eager device µs | schedx graph µs/replay | torch / schedx host |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, t_ms, host_us, dev_us, graph_us in rows:
        lines.append(f"| {name} | {n:,} | {t_ms:.3f} | {host_us:.2f} | {dev_us:.2f} | {graph_us:.2f} | {t_ms * 1e3 / host_us:,.0f}× |")
    worst_host = max(r[3] for r in rows)
    ratio_100 = min(r[2] * 1e3 / r[3] for r in rows if r[1] == 100)
    lines += [
        "",
        "Captured training step (4×Linear(512,512)+ReLU, batch 256, AdamW capturable, 8 tensor-LR groups, "
        "OneCycleLR):",
        "",
        "| graph | µs per replay |",
        "|---|---:|",
        f"| forward + backward + AdamW.step() | {base_us:.1f} |",
        f"| ... + schedx scheduler.step() | {with_us:.1f} |",
        "",
        f"Replayed LR trajectory identical to eager ({replays} replays): **{identical}**.",
        "",
        "Targets (issue 4): eager host time ≤ 20 µs at every N: "
        f"{'met' if worst_host <= 20 else 'NOT met'} (worst {worst_host:.2f} µs); ≥ 50× torch at N=100: "
        f"{'met' if ratio_100 >= 50 else 'NOT met'} (lowest {ratio_100:,.0f}×); replay identical to eager: "
        f"{'met' if identical else 'NOT met'}.",
    ]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
