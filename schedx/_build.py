"""What this installation of schedx is: its build (the CUDA module, its CUDA version and architectures),
the torch beside it, the GPUs torch sees. `build_info()` and `python -m schedx info` report it; a CUDA
step that cannot use the CUDA module warns once here, saying why and how to get it.
"""
from __future__ import annotations

import functools
import json
import platform
import sys
import warnings
from pathlib import Path

import torch

from . import _version

try:
    from . import _cuda
except ImportError:
    _cuda = None

# Written by setup.py beside the extensions.
BUILD_INFO_FILE = Path(__file__).with_name("_build_info.json")
HOW_TO_GET_CUDA = ("install a schedx wheel built with it, or build from source with a CUDA compiler "
                   "(nvcc on PATH or in $CUDA_HOME/bin; SCHEDX_CUDA=1 makes it required)")


@functools.cache
def _recorded_build() -> dict:
    try:
        return json.loads(BUILD_INFO_FILE.read_text())
    except (OSError, ValueError):
        return {"cuda": None, "cuda_note": "no record of the build (schedx/_build_info.json is missing)"}


def covers(archs: list[str], capability: tuple[int, int]) -> bool:
    """Whether code for `archs` ("sm_80", "compute_120", ...) runs on a GPU of `capability`: machine code
    of the same major version and an equal or lower minor, or PTX of an equal or lower version."""
    major, minor = capability
    for arch in archs:
        kind, number = arch.split("_")
        arch_major, arch_minor = divmod(int(number), 10)
        if kind == "sm" and arch_major == major and arch_minor <= minor:
            return True
        if kind == "compute" and (arch_major, arch_minor) <= (major, minor):
            return True
    return False


def _gpus(archs: list[str]) -> list[dict]:
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        capability = torch.cuda.get_device_capability(index)
        gpus.append({"index": index, "name": torch.cuda.get_device_name(index),
                     "capability": f"{capability[0]}.{capability[1]}",
                     "covered": _cuda is not None and covers(archs, capability)})
    return gpus


def build_info() -> dict:
    """schedx's version; torch's, and whether it is in the supported range; Python's; whether the CUDA
    module is present, its CUDA version and architectures (and what the build said); the GPUs torch
    sees, each with whether the CUDA module's architectures cover it."""
    recorded = _recorded_build()
    cuda = recorded.get("cuda") or {}
    archs = cuda.get("archs", []) if _cuda is not None else []
    return {
        "schedx": _version.__version__,
        "torch": str(torch.__version__),
        "torch_supported": _version.torch_supported(str(torch.__version__)),
        "torch_range": _version.TORCH_RANGE,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "cuda_module": _cuda is not None,
        "cuda_version": cuda.get("version") if _cuda is not None else None,
        "cuda_archs": archs,
        "cuda_build_note": recorded.get("cuda_note"),
        "gpus": _gpus(archs),
    }


def format_build_info(info: dict) -> str:
    """`python -m schedx info`'s text."""
    supported = "supported" if info["torch_supported"] else "NOT supported"
    if info["cuda_module"]:
        cuda = f"present (CUDA {info['cuda_version']}; {' '.join(info['cuda_archs']) or 'architectures unknown'})"
    else:
        cuda = "absent"
    lines = [
        f"schedx       {info['schedx']}",
        f"torch        {info['torch']} ({supported}: schedx needs torch{info['torch_range']}; "
        f"torch's CUDA: {info['torch_cuda'] or 'none'})",
        f"python       {info['python']} ({info['platform']})",
        f"CUDA module  {cuda}",
        f"build        {info['cuda_build_note']}",
    ]
    if not info["gpus"]:
        lines.append("GPUs         none visible to torch")
    for gpu in info["gpus"]:
        fused = "fused CUDA step" if gpu["covered"] else "torch's own path (not covered by the CUDA module)"
        lines.append(f"GPU {gpu['index']}        {gpu['name']}, compute capability {gpu['capability']}: {fused}")
    return "\n".join(lines)


_warned: set[str] = set()


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"schedx: CUDA tensor LRs take torch's own (slower) path: {reason}; "
                      f"{HOW_TO_GET_CUDA}. `python -m schedx info` shows the build.", stacklevel=3)


def cuda_step_available(device: torch.device) -> bool:
    """Whether the fused CUDA step can run on `device`; if not, warns once why and how to get it."""
    if _cuda is None:
        _warn_once(f"this schedx has no CUDA module ({_recorded_build().get('cuda_note')})")
        return False
    archs = (_recorded_build().get("cuda") or {}).get("archs")
    capability = torch.cuda.get_device_capability(device)
    if archs and not covers(archs, capability):
        _warn_once(f"the CUDA module was built for {' '.join(archs)}, which does not cover "
                   f"{torch.cuda.get_device_name(device)} (compute capability {capability[0]}.{capability[1]})")
        return False
    return True


def require_matplotlib(what: str) -> None:
    """SystemExit with one line naming the package to install, unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(f"python -m schedx {what} needs matplotlib: pip install matplotlib "
                         "(schedx's `plot` extra)") from None
