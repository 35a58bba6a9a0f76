"""Builds schedx._C, the fused CPU engine, and schedx._cuda, the fused CUDA step, where it can.

Both use only the CPython API (no torch headers, no torch at build time), so they compile in seconds
and build in pip's isolated build environment. Floating-point contraction is off (-ffp-contract=off,
nvcc --fmad=false) so that results do not depend on the processor: bit-identical to torch's Python
arithmetic on the CPU.

SCHEDX_CUDA selects the CUDA module: "auto" (the default) builds it when a CUDA compiler (nvcc on
PATH or in $CUDA_HOME/bin) is found; "1" requires it (the build fails without nvcc); "0" skips it.
SCHEDX_CUDA_ARCHS lists the GPU architectures to compile for, as torch's TORCH_CUDA_ARCH_LIST does
("8.0 9.0+PTX": machine code for each, "+PTX" adds PTX that newer GPUs compile when loading it);
architectures this nvcc cannot compile for are left out, and the build says so.

The decision and the architectures built go into schedx/_build_info.json beside the extensions, which
`python -m schedx info` reports (pip shows nothing of a successful build without -v).
"""
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

VERSION = runpy.run_path(str(Path(__file__).parent / "schedx" / "_version.py"))

CPU_FLAGS = ["-O3", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-fvisibility=hidden"]
# SCHEDX_SANITIZE=1 (`make sanitize`): AddressSanitizer and UndefinedBehaviorSanitizer, stopping at
# the first report.
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer", "-g"]
# The architectures of torch's CUDA 12.8 / 13.0 wheels, Turing (7.5) to Blackwell (12.0), plus PTX of
# the newest for GPUs after it. Within a major version, machine code also runs on later minors (8.0's
# on 8.7 and 8.9, 10.0's on 10.3, 12.0's on 12.1).
DEFAULT_CUDA_ARCHS = "7.5 8.0 8.6 9.0 10.0 11.0 12.0+PTX"
# --threads 0: the architectures compile in parallel, one per core.
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false", "--threads", "0", "-Xcompiler", "-fPIC,-fvisibility=hidden"]
HEADERS = sorted(str(p) for p in Path("csrc").rglob("*.h"))
BUILD_INFO = "_build_info.json"


def say(message: str) -> None:
    """One line about the build, on stderr (pip shows it only with -v or when the build fails)."""
    print(f"schedx: {message}", file=sys.stderr, flush=True)


def find_nvcc() -> str | None:
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").is_file():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def cuda_library_dir(nvcc: str) -> str:
    """The folder holding libcudart_static.a for this nvcc."""
    candidates = [os.environ.get("CUDA_HOME"), str(Path(nvcc).resolve().parents[1]), "/usr/local/cuda"]
    for home in filter(None, candidates):
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib"):
            if (Path(home) / sub / "libcudart_static.a").is_file():
                return str(Path(home) / sub)
    raise RuntimeError(f"schedx: libcudart_static.a not found for {nvcc}; set CUDA_HOME")


def nvcc_release(nvcc: str) -> str:
    """"13.0" from `nvcc --version`."""
    match = re.search(r"release (\d+\.\d+)", subprocess.check_output([nvcc, "--version"], text=True))
    return match.group(1) if match else "unknown"


def cuda_archs(nvcc: str) -> tuple[list[str], list[str]]:
    """The nvcc -gencode flags for SCHEDX_CUDA_ARCHS, and the architectures this nvcc cannot build.
    PTX asked for an architecture this nvcc lacks goes with the newest one it builds instead."""
    supported = set(subprocess.check_output([nvcc, "--list-gpu-arch"], text=True).split())
    numbers, ptx, missing = [], set(), []
    for entry in os.environ.get("SCHEDX_CUDA_ARCHS", DEFAULT_CUDA_ARCHS).replace(";", " ").split():
        number = entry.removesuffix("+PTX").replace(".", "")
        if f"compute_{number}" in supported:
            numbers.append(number)
        else:
            missing.append(entry)
        if entry.endswith("+PTX"):
            ptx.add(number if f"compute_{number}" in supported else None)
    if None in ptx and numbers:
        ptx.add(numbers[-1])
    return [f"-gencode=arch=compute_{n},code=[sm_{n}" + (f",compute_{n}]" if n in ptx else "]")
            for n in numbers], missing


def built_archs(gencode: list[str]) -> list[str]:
    """["sm_75", ..., "compute_120"] from -gencode flags."""
    return [code for flag in gencode for code in flag.split("code=[")[1].rstrip("]").split(",")]


def cuda_choice() -> str:
    """"auto", "0" or "1" from SCHEDX_CUDA."""
    choice = os.environ.get("SCHEDX_CUDA", "auto").strip().lower()
    if choice in ("0", "false", "no", "off"):
        return "0"
    if choice in ("1", "true", "yes", "on"):
        return "1"
    return "auto"


class BuildExt(build_ext):
    """Compiles the .cu sources of an extension with nvcc, then links them as usual; writes what was
    built to schedx/_build_info.json."""

    def build_extension(self, ext):
        cu_sources = [s for s in ext.sources if s.endswith(".cu")]
        if cu_sources:
            include = ["-I" + d for d in ext.include_dirs + [_python_include()]]
            objects = []
            for source in cu_sources:
                obj = str(Path(self.build_temp) / (Path(source).stem + ".o"))
                Path(obj).parent.mkdir(parents=True, exist_ok=True)
                cmd = [CUDA["nvcc"], *NVCC_FLAGS, *CUDA["gencode"], *include, "-c", source, "-o", obj]
                print(" ".join(cmd), flush=True)
                subprocess.check_call(cmd)
                objects.append(obj)
            ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
            ext.extra_objects = objects + list(ext.extra_objects or [])
        super().build_extension(ext)

    def run(self):
        super().run()
        info = Path(self.get_ext_fullpath("schedx._C")).parent / BUILD_INFO
        cuda = {key: CUDA[key] for key in ("version", "archs", "missing_archs")} if CUDA["build"] else None
        info.write_text(json.dumps({"cuda": cuda, "cuda_note": CUDA["note"]}, indent=1) + "\n")


def _python_include() -> str:
    import sysconfig

    return sysconfig.get_paths()["include"]


def decide_cuda() -> dict:
    """Whether to build the CUDA module, with what, and the line that says so."""
    choice, nvcc = cuda_choice(), find_nvcc()
    if choice == "0":
        return {"build": False, "note": "built without the CUDA module: SCHEDX_CUDA=0"}
    if nvcc is None:
        if choice == "1":
            raise RuntimeError("schedx: SCHEDX_CUDA=1 but nvcc was not found (PATH, $CUDA_HOME/bin)")
        return {"build": False, "note": "built without the CUDA module: no nvcc on PATH or in $CUDA_HOME/bin"}
    gencode, missing = cuda_archs(nvcc)
    if not gencode:
        raise RuntimeError(f"schedx: {nvcc} supports none of SCHEDX_CUDA_ARCHS ({' '.join(missing)})")
    version, archs = nvcc_release(nvcc), built_archs(gencode)
    note = f"built the CUDA module with {nvcc} (CUDA {version}) for {' '.join(archs)}"
    if missing:
        note += f"; this nvcc cannot build {' '.join(missing)}"
    return {"build": True, "nvcc": nvcc, "gencode": gencode, "version": version, "archs": archs,
            "missing_archs": missing, "note": note}


def extensions() -> list[Extension]:
    sanitize = os.environ.get("SCHEDX_SANITIZE", "0") == "1"
    exts = [
        Extension(
            "schedx._C",
            sources=sorted(str(p) for p in Path("csrc").rglob("*.cpp")),
            depends=HEADERS,
            include_dirs=["csrc"],
            extra_compile_args=CPU_FLAGS + (SANITIZE_FLAGS if sanitize else []),
            extra_link_args=SANITIZE_FLAGS if sanitize else [],
            language="c++",
        )
    ]
    say(CUDA["note"].replace("built", "building", 1))
    if CUDA["build"]:
        exts.append(
            Extension(
                "schedx._cuda",
                sources=["csrc/device/engine_cuda.cu"],
                depends=HEADERS,
                include_dirs=["csrc"],
                library_dirs=[cuda_library_dir(CUDA["nvcc"])],
                libraries=["cudart_static", "rt", "pthread", "dl"],
                extra_compile_args=CPU_FLAGS,
                language="c++",
            )
        )
    return exts


CUDA = decide_cuda()
setup(
    version=VERSION["__version__"],
    install_requires=[f"torch{VERSION['TORCH_RANGE']}"],
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
)
