// The step entry: `step()` of the registered classes, dispatched through the family table to the
// family's plain step, or to the class's Python `_python_step` for anything else.
#include "py/step.h"

namespace schedx {
namespace {

// Every family, in the order of rules/kinds.h's SCHEDX_FAMILIES, which numbers them.
#define SCHEDX_FAMILY_ROW(name) &k##name##Family,
const EngineFamily* const kFamilies[] = {SCHEDX_FAMILIES(SCHEDX_FAMILY_ROW)};
#undef SCHEDX_FAMILY_ROW
static_assert(sizeof(kFamilies) / sizeof(kFamilies[0]) == kNumFamilies, "one row per family");

constexpr int kMaxPlainClasses = 32;
PlainClass plain_classes[kMaxPlainClasses];
int n_plain_classes = 0;

// The whole plain step() of a scheduler of a registered class: counters advanced, every group's LR
// written, `_last_lr` set; True. False, with nothing changed, for anything its Python step must do
// (another class, its first step, counters that are not ints, LRs that are not floats, ...).
PyObject* plain_step(PyObject* scheduler, PyObject* const* args, Py_ssize_t nargs) {
  const PlainClass* cls = plain_class_of(Py_TYPE(scheduler));
  if (cls == nullptr || nargs != cls->family->step_args) Py_RETURN_FALSE;
  if (PyTuple_GET_SIZE(cls->hooks) > 0 && has_instance_hook(*cls, scheduler)) return declined();
  return cls->family->plain_step(*cls, scheduler, args);
}

bool is_tuple_of_str(PyObject* v) {
  if (!PyTuple_CheckExact(v)) return false;
  for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(v); ++k)
    if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(v, k))) return false;
  return true;
}

// An enumerator of rules/kinds.h from Python's int, or false with ValueError.
template <typename Enum>
bool read_enum(PyObject* obj, int count, const char* what, Enum* out) {
  const long value = PyLong_AsLong(obj);
  if (value == -1 && PyErr_Occurred()) return false;
  if (value < 0 || value >= count) {
    PyErr_Format(PyExc_ValueError, "schedx: unknown %s %ld", what, value);
    return false;
  }
  *out = static_cast<Enum>(value);
  return true;
}

}  // namespace

const PlainClass* plain_class_of(PyTypeObject* type) {
  for (int k = 0; k < n_plain_classes; ++k)
    if (plain_classes[k].type == type) return &plain_classes[k];
  return nullptr;
}

bool has_instance_hook(const PlainClass& cls, PyObject* scheduler, std::initializer_list<PyObject*> extra) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return true;
  const Py_ssize_t n = PyTuple_GET_SIZE(cls.hooks);
  for (Py_ssize_t k = 0; k < n; ++k)
    if (PyDict_GetItemWithError(dict.get(), PyTuple_GET_ITEM(cls.hooks, k)) != nullptr) return true;
  for (PyObject* name : extra)
    if (PyDict_GetItemWithError(dict.get(), name) != nullptr) return true;
  return PyErr_Occurred() != nullptr;
}

bool parse_kind(PyObject* obj, Kind* kind) { return read_enum(obj, kNumKinds, "scheduler kind", kind); }

PyObject* fused_step(PyObject*, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "step() needs the scheduler");
    return nullptr;
  }
  if (kwnames == nullptr) {
    Ref done(plain_step(args[0], args + 1, nargs - 1));
    if (!done) return nullptr;
    if (done.get() == Py_True) Py_RETURN_NONE;
  }
  return PyObject_VectorcallMethod(names.python_step, args, nargsf, kwnames);
}

PyObject* register_plain_class(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("register_plain_class", nargs, 6)) return nullptr;
  PlainClass entry{nullptr, nullptr, Family::Plan, Kind::StepLR, args[3], args[4], args[5]};
  if (!read_enum(args[1], kNumFamilies, "family", &entry.id) ||
      (entry.id == Family::Plan && !parse_kind(args[2], &entry.kind)))
    return nullptr;
  entry.family = kFamilies[static_cast<int>(entry.id)];
  if (!PyType_Check(args[0]) || !PyTuple_CheckExact(args[3]) || !is_tuple_of_str(args[5]) ||
      !entry.family->accepts(entry)) {
    PyErr_SetString(PyExc_TypeError,
                    "schedx: register_plain_class(type, family, kind, tuple of names, extra, "
                    "tuple of hook names)");
    return nullptr;
  }
  if (plain_class_of(reinterpret_cast<PyTypeObject*>(args[0])) != nullptr) Py_RETURN_NONE;
  if (n_plain_classes == kMaxPlainClasses) {
    PyErr_SetString(PyExc_RuntimeError, "schedx: too many plain-step classes");
    return nullptr;
  }
  entry.type = reinterpret_cast<PyTypeObject*>(args[0]);
  // Kept for the life of the process.
  Py_INCREF(args[0]);
  Py_INCREF(args[3]);
  Py_INCREF(args[4]);
  Py_INCREF(args[5]);
  plain_classes[n_plain_classes++] = entry;
  Py_RETURN_NONE;
}

bool add_family_methods(PyObject* module) {
  for (const EngineFamily* family : kFamilies)
    if (family->methods != nullptr && PyModule_AddFunctions(module, family->methods) < 0) return false;
  return true;
}

}  // namespace schedx
