"""pytest-benchmark hooks for benchmarks/ (loaded only when a benchmark file is run explicitly)."""
from __future__ import annotations

import os


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


_LOADAVG_START: list[float] = []


def pytest_sessionstart(session):
    _LOADAVG_START.append(os.getloadavg()[0])


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what report.py prints about the run: torch, schedx, CPU model and cores, and the load
    average (other work on the machine skews the timings)."""
    import torch

    import schedx

    machine_info["torch_version"] = torch.__version__
    machine_info["schedx_version"] = schedx.__version__
    machine_info["cpu_model"] = _cpu_model()
    machine_info["cpu_cores"] = len(os.sched_getaffinity(0))
    machine_info["torch_threads"] = torch.get_num_threads()
    if _LOADAVG_START:
        machine_info["loadavg_start"] = _LOADAVG_START[0]
    machine_info["loadavg_end"] = os.getloadavg()[0]
