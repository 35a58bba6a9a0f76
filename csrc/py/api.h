// Small pieces of the CPython API glue that every extension source of schedx shares.
#pragma once

#include <Python.h>

namespace schedx {

// The argument count of a METH_FASTCALL function; a TypeError as CPython words it otherwise.
inline bool check_nargs(const char* name, Py_ssize_t nargs, Py_ssize_t expected) {
  if (nargs == expected) return true;
  PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected, nargs);
  return false;
}

}  // namespace schedx

// METH_FASTCALL functions are stored in PyMethodDef as a PyCFunction.
#define SCHEDX_FASTCALL(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(f))
