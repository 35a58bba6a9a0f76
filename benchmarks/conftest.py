"""pytest-benchmark hooks for benchmarks/ (loaded only when a benchmark file is run explicitly)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE_PATHS = ("schedx", "csrc", "setup.py")  # what decides the schedx being measured


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


def _uncommitted_engine_files() -> list[str]:
    """The engine's files that differ from the commit: pytest-benchmark records only "dirty", and a
    report of a dirty tree should say whose changes it measured."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", *ENGINE_PATHS],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    return [line[3:] for line in status.stdout.splitlines()] if status.returncode == 0 else []


_AT_START: dict = {}


@pytest.fixture
def progress(request, capsys):
    """``progress(line)`` writes a line to the terminal as the run goes, past pytest's capture."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str) -> None:
        with capsys.disabled():
            reporter.write_line(line)

    return write


def pytest_report_teststatus(report, config):
    """No "." for a passed benchmark: each writes its own progress line instead."""
    if report.when == "call" and report.passed:
        return "passed", "", "PASSED"
    return None


def pytest_sessionstart(session):
    from workload import schedx_fingerprint

    _AT_START.update(loadavg=os.getloadavg()[0], fingerprint=schedx_fingerprint())


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what report.py prints about the run: torch, schedx (version, build fingerprint and
    uncommitted engine files), CPU model and cores, and the load average (other work on the
    machine skews the timings)."""
    import torch

    import schedx

    machine_info["torch_version"] = torch.__version__
    machine_info["schedx_version"] = schedx.__version__
    machine_info["schedx_fingerprint"] = _AT_START.get("fingerprint")
    machine_info["schedx_uncommitted"] = _uncommitted_engine_files()
    machine_info["cpu_model"] = _cpu_model()
    machine_info["cpu_cores"] = len(os.sched_getaffinity(0))
    machine_info["torch_threads"] = torch.get_num_threads()
    if "loadavg" in _AT_START:
        machine_info["loadavg_start"] = _AT_START["loadavg"]
    machine_info["loadavg_end"] = os.getloadavg()[0]
