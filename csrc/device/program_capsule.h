// The capsule that carries a Program (program.h) from the CPU extension, which builds it, to whichever
// engine runs it: the CPU loop (program_cpu.cpp) or the CUDA launch (engine_cuda.cu).
#pragma once

#include <Python.h>

#include "device/program.h"

namespace schedx {

constexpr const char* kProgramCapsuleName = "schedx.Program";

// The program in `capsule`, or null with a TypeError set.
inline Program* program_from_capsule(PyObject* capsule) {
  return static_cast<Program*>(PyCapsule_GetPointer(capsule, kProgramCapsuleName));
}

// Reads the run's mode (program.h's RunMode) and `is_initial` into the program.
inline bool set_program_mode(Program* prog, PyObject* mode, PyObject* is_initial) {
  const long value = PyLong_AsLong(mode);
  if (value == -1 && PyErr_Occurred()) return false;
  if (value < 0 || value > 2) {
    PyErr_Format(PyExc_ValueError, "schedx: unknown run mode %ld", value);
    return false;
  }
  const int initial = PyObject_IsTrue(is_initial);
  if (initial < 0) return false;
  prog->mode = static_cast<RunMode>(value);
  prog->is_initial = initial;
  return true;
}

// Reads the metric pointer of this step into the program: required (non-null) when a stage is a
// ReduceLROnPlateau, which reads it.
inline bool set_program_metric(Program* prog, PyObject* address, PyObject* is_f64) {
  const long long value = PyLong_AsLongLong(address);
  if (value == -1 && PyErr_Occurred()) return false;
  const int f64 = PyObject_IsTrue(is_f64);
  if (f64 < 0) return false;
  for (int32_t k = 0; k < prog->n_stages; ++k) {
    if (prog->stages[k].family == Family::Plateau && value == 0) {
      PyErr_SetString(PyExc_ValueError, "schedx: ReduceLROnPlateau needs a metric");
      return false;
    }
  }
  prog->metric = reinterpret_cast<const void*>(static_cast<intptr_t>(value));
  prog->metric_is_f64 = f64;
  return true;
}

}  // namespace schedx
