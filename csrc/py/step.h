// The step entry and the class registry (py/step.cpp), for the module (py/module.cpp).
#pragma once

#include "py/family.h"

namespace schedx {

// step(self, *args, **kwargs): the `step` of the registered classes (an instancemethod:
// `step_method`, `chain_step_method` or `plateau_step_method`), so that a plain step runs no Python
// frame at all (at one group, the frame cost as much as the rest of the step). Anything but a plain
// step of a registered class runs the class's Python `_python_step` with the same arguments.
PyObject* fused_step(PyObject*, PyObject* const* args, size_t nargsf, PyObject* kwnames);

// register_plain_class(cls, family, kind, setting_names, extra, hooks): instances of exactly `cls` step
// through their family's plain step. `family` numbers rules/kinds.h's Family; `kind`, a Plan class's
// Kind (None for the others); `setting_names` and `extra` are what the family reads (its `accepts`);
// `hooks`, the names of the methods torch's step calls on an instance (PlainClass::hooks).
PyObject* register_plain_class(PyObject*, PyObject* const* args, Py_ssize_t nargs);

// Adds every family's functions (EngineFamily::methods) to the module.
bool add_family_methods(PyObject* module);

}  // namespace schedx
