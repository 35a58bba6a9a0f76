"""Builds schedx._C, the fused CPU engine, and schedx._cuda, the fused CUDA step, where it can.

Both use only the CPython API (no torch headers), so they compile in seconds. Floating-point
contraction is off (-ffp-contract=off, nvcc --fmad=false) so that results do not depend on the
processor: bit-identical to torch's Python arithmetic on the CPU.

SCHEDX_CUDA selects the CUDA module: "auto" (the default) builds it when nvcc is found and the
installed torch is a CUDA build; "1" requires it (the build fails without nvcc); "0" skips it.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CPU_FLAGS = ["-O3", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-fvisibility=hidden"]
# SCHEDX_SANITIZE=1 (`make sanitize`): AddressSanitizer and UndefinedBehaviorSanitizer, stopping at
# the first report.
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer", "-g"]
# sm_80 (A100) and sm_90 (H100) machine code, plus PTX for newer GPUs.
NVCC_ARCH = [
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90,code=[sm_90,compute_90]",
]
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false", "-Xcompiler", "-fPIC,-fvisibility=hidden"]
HEADERS = [
    "csrc/dd_math.h",
    "csrc/expr.h",
    "csrc/formulas.h",
    "csrc/kinds.h",
    "csrc/program.h",
    "csrc/program_capsule.h",
    "csrc/py_api.h",
]


def find_nvcc() -> str | None:
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").is_file():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def cuda_library_dir(nvcc: str) -> str:
    """The folder holding libcudart_static.a for this nvcc."""
    candidates = [os.environ.get("CUDA_HOME"), "/usr/local/cuda", str(Path(nvcc).resolve().parents[1])]
    for home in filter(None, candidates):
        for sub in ("lib64", "lib"):
            if (Path(home) / sub / "libcudart_static.a").is_file():
                return str(Path(home) / sub)
    raise RuntimeError(f"schedx: libcudart_static.a not found for {nvcc}; set CUDA_HOME")


def torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.version.cuda is not None


def want_cuda(nvcc: str | None) -> bool:
    choice = os.environ.get("SCHEDX_CUDA", "auto").strip().lower()
    if choice in ("0", "false", "no", "off"):
        return False
    if choice in ("1", "true", "yes", "on"):
        if nvcc is None:
            raise RuntimeError("SCHEDX_CUDA=1 but nvcc was not found (PATH, $CUDA_HOME/bin)")
        return True
    return nvcc is not None and torch_has_cuda()


class BuildExt(build_ext):
    """Compiles the .cu sources of an extension with nvcc, then links them as usual."""

    def build_extension(self, ext):
        cu_sources = [s for s in ext.sources if s.endswith(".cu")]
        if cu_sources:
            nvcc = find_nvcc()
            include = ["-I" + d for d in ext.include_dirs + [_python_include()]]
            objects = []
            for source in cu_sources:
                obj = str(Path(self.build_temp) / (Path(source).stem + ".o"))
                Path(obj).parent.mkdir(parents=True, exist_ok=True)
                cmd = [nvcc, *NVCC_FLAGS, *NVCC_ARCH, *include, "-c", source, "-o", obj]
                print(" ".join(cmd), flush=True)
                subprocess.check_call(cmd)
                objects.append(obj)
            ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
            ext.extra_objects = objects + list(ext.extra_objects or [])
        super().build_extension(ext)


def _python_include() -> str:
    import sysconfig

    return sysconfig.get_paths()["include"]


def extensions() -> list[Extension]:
    sanitize = os.environ.get("SCHEDX_SANITIZE", "0") == "1"
    exts = [
        Extension(
            "schedx._C",
            sources=["csrc/engine_cpu.cpp", "csrc/program_cpu.cpp"],
            depends=HEADERS,
            include_dirs=["csrc"],
            extra_compile_args=CPU_FLAGS + (SANITIZE_FLAGS if sanitize else []),
            extra_link_args=SANITIZE_FLAGS if sanitize else [],
            language="c++",
        )
    ]
    nvcc = find_nvcc()
    if want_cuda(nvcc):
        print(f"schedx: building the CUDA module with {nvcc}", file=sys.stderr)
        exts.append(
            Extension(
                "schedx._cuda",
                sources=["csrc/engine_cuda.cu"],
                depends=HEADERS,
                include_dirs=["csrc"],
                library_dirs=[cuda_library_dir(nvcc)],
                libraries=["cudart_static", "rt", "pthread", "dl"],
                extra_compile_args=CPU_FLAGS,
                language="c++",
            )
        )
    else:
        print("schedx: building without the CUDA module (SCHEDX_CUDA=1 requires it)", file=sys.stderr)
    return exts


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
