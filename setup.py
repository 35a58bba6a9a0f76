"""Builds schedx._C, the fused CPU engine.

The engine uses only the CPython API (no torch headers), so it compiles in seconds. Floating-point
contraction is off so that results are bit-identical to torch's Python arithmetic on any CPU.
"""
from setuptools import Extension, setup

CPU_FLAGS = ["-O3", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-fvisibility=hidden"]

setup(
    ext_modules=[
        Extension(
            "schedx._C",
            sources=["csrc/engine_cpu.cpp"],
            depends=["csrc/formulas.h", "csrc/kinds.h"],
            include_dirs=["csrc"],
            extra_compile_args=CPU_FLAGS,
            language="c++",
        )
    ],
)
