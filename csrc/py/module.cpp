// The module schedx._C: the interned names, the `step` methods the registered classes take, the
// functions every family gives the Python layer (py/step.cpp's family table), tensor mode's
// (device/program_cpu.cpp) and the constants (py/constants.cpp).
#include "py/step.h"

namespace schedx {

Names names;

// Tensor-LR programs on CPU tensors (device/program_cpu.cpp) and the shared numbers (py/constants.cpp).
extern PyMethodDef program_methods[];
PyObject* constants(PyObject*, PyObject*);

bool intern_names() {
#define SCHEDX_INTERN(member, text) \
  if ((names.member = PyUnicode_InternFromString(text)) == nullptr) return false;
  SCHEDX_NAMES(SCHEDX_INTERN)
#undef SCHEDX_INTERN
  return true;
}

namespace {

// collect_lrs(groups): torch's `_param_groups_val_list(optimizer, "lr")` for float LRs.
PyObject* collect_lrs(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("collect_lrs", nargs, 1)) return nullptr;
  return current_lrs(args[0]);
}

PyMethodDef methods[] = {
    {"register_plain_class", SCHEDX_FASTCALL(register_plain_class), METH_FASTCALL,
     "Registers a class whose instances' plain steps run in its family's plain step."},
    {"collect_lrs", SCHEDX_FASTCALL(collect_lrs), METH_FASTCALL,
     "Every group's current lr, as torch's _param_groups_val_list."},
    {"constants", constants, METH_NOARGS,
     "The numbers the Python layer shares with the engine: {table: {name: value}}."},
    {nullptr, nullptr, 0, nullptr},
};

// The three `step` methods (fused_step), with the signatures of torch's methods they replace.
PyMethodDef step_defs[] = {
    {"step", SCHEDX_FASTCALL(fused_step), METH_FASTCALL | METH_KEYWORDS,
     "step(self, epoch=None)\n--\n\nPerform a step: fused in schedx's engine when plain."},
    {"step", SCHEDX_FASTCALL(fused_step), METH_FASTCALL | METH_KEYWORDS,
     "step(self)\n--\n\nPerform a step: fused in schedx's engine when plain."},
    {"step", SCHEDX_FASTCALL(fused_step), METH_FASTCALL | METH_KEYWORDS,
     "step(self, metrics, epoch=None)\n--\n\nPerform a step: fused in schedx's engine when plain."},
};

// Adds `step_defs[k]` to the module as an instancemethod (a method of the class it is assigned to).
bool add_step_method(PyObject* module, PyMethodDef* def, const char* name) {
  Ref function(PyCFunction_NewEx(def, nullptr, nullptr));
  PyObject* method = function ? PyInstanceMethod_New(function.get()) : nullptr;
  if (method == nullptr || PyModule_AddObject(module, name, method) < 0) {
    Py_XDECREF(method);
    return false;
  }
  return true;
}

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "schedx._C", "schedx's fused CPU engine (see csrc/).", -1,
    methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

// The module, or null with its error.
PyObject* create_module() {
  if (!intern_names()) return nullptr;
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  // The registered classes take these as their step (schedx/lr_scheduler.py, swa_utils.py).
  if (!add_family_methods(module) || PyModule_AddFunctions(module, program_methods) < 0 ||
      !add_step_method(module, &step_defs[0], "step_method") ||
      !add_step_method(module, &step_defs[1], "chain_step_method") ||
      !add_step_method(module, &step_defs[2], "plateau_step_method")) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}

}  // namespace schedx

PyMODINIT_FUNC PyInit__C() { return schedx::create_module(); }
