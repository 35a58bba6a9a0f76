// A scheduler family as the engine runs it: one file in csrc/families/ behind the small interface below,
// one row in rules/kinds.h's SCHEDX_FAMILIES. A family reads its inputs from the scheduler's instance
// dict (the plain step and the Python layer's get_lr() fall-back read them with the same function),
// runs its pass over the groups (py/group_writer.h) and records torch's bookkeeping.
//
// schedx/_stepping.py registers schedx's classes (register_plain_class): their instances keep every
// attribute a step reads or writes in their __dict__ (no property, no __setattr__ of their own), so
// their steps use that dict directly: through the attribute protocol, those reads and writes were
// most of a one-group step.
#pragma once

#include "py/group_writer.h"

namespace schedx {

struct EngineFamily;

// A registered class: exactly this type (a user's subclass may add properties: it is not registered).
struct PlainClass {
  PyTypeObject* type;
  const EngineFamily* family;
  Family id;
  Kind kind;                // Plan: its rule
  PyObject* setting_names;  // Plan: the attributes kinds.h lists for the kind; Schedule: the callables'
  // Per class: MultiStepLR's Counter type, CyclicLR's built-in scale functions, SWALR's anneal
  // functions, the trace cache of LambdaLR & co.
  PyObject* extra;
  // The names of the methods torch's step calls on the scheduler (a tuple of str): one set on the
  // instance is what torch's step calls, so the Python step runs.
  PyObject* hooks;
};

struct EngineFamily {
  // The positional arguments its step() takes besides the scheduler (ReduceLROnPlateau's metrics).
  Py_ssize_t step_args;
  // Whether a class may register with these setting names and extra (register_plain_class).
  bool (*accepts)(const PlainClass& cls);
  // A registered scheduler's whole plain step (hooks already checked): True, its groups written and
  // its step recorded; False with nothing changed (its Python step runs); null with an error.
  PyObject* (*plain_step)(const PlainClass& cls, PyObject* scheduler, PyObject* const* args);
  // The functions it gives the Python layer, up to a null row; null for none.
  PyMethodDef* methods;
};

// One definition per family, named k<Family>Family (kPlanFamily, ...), in its csrc/families/ file.
#define SCHEDX_DECLARE_FAMILY(name) extern const EngineFamily k##name##Family;
SCHEDX_FAMILIES(SCHEDX_DECLARE_FAMILY)
#undef SCHEDX_DECLARE_FAMILY

// The registration of exactly this class, or null (py/step.cpp).
const PlainClass* plain_class_of(PyTypeObject* type);

// Whether an instance overrides a method torch's step calls on it: one of `cls.hooks` in its dict,
// or, for a composite's child (`extra`: "step", and SequentialLR's "get_last_lr"), one of those.
// True also when a lookup raised (then declined() passes the error on).
bool has_instance_hook(const PlainClass& cls, PyObject* scheduler,
                       std::initializer_list<PyObject*> extra = {});

inline bool accepts_anything(const PlainClass&) { return true; }

// A Kind from Python's int, or false with ValueError.
bool parse_kind(PyObject* obj, Kind* kind);

// A plain step's answer when it cannot run: False (the Python step runs), or null when the reason is
// an error (a key's __eq__ raised, memory ran out).
inline PyObject* declined() {
  if (PyErr_Occurred()) return nullptr;
  Py_RETURN_FALSE;
}

// Whether the flag torch's get_lr() call leaves False (`_get_lr_called_within_step`) is a bool or
// absent. A step's record replaces it after the groups are written, where torch lets go of it before
// reading them: anything else (an object with a finalizer) is left to torch's code.
inline bool flag_lets_go_quietly(PyObject* dict) {
  PyObject* flag = PyDict_GetItemWithError(dict, names.get_lr_called_within_step);
  return flag == Py_False || flag == Py_True || (flag == nullptr && !PyErr_Occurred());
}

// Counters that stay exact in a double after the step's increment (2**53 and beyond are left to
// torch's code, which counts in Python ints).
inline bool exact_counters(int64_t last_epoch, int64_t step_count) {
  return exact_int(static_cast<double>(last_epoch) + 1.0) && exact_int(static_cast<double>(step_count) + 1.0);
}

// The counters of a scheduler whose plain step is torch's LRScheduler.step past its first (torch's
// warning check): exact ints that stay exact after the step's increment.
inline bool read_plain_counters(PyObject* dict, int64_t* last_epoch, int64_t* step_count) {
  return read_dict_int64(dict, names.last_epoch, last_epoch) &&
         read_dict_int64(dict, names.step_count, step_count) && *step_count != 1 &&
         exact_counters(*last_epoch, *step_count) && flag_lets_go_quietly(dict);
}

// Sets a scheduler's `_last_lr` to a step's list (held by the caller); a list the step refilled is
// already there, unless Python code run during the step put another in its place.
inline bool store_last_lr(PyObject* dict, PyObject* last_lr) {
  PyObject* current = PyDict_GetItemWithError(dict, names.last_lr);
  if (current == last_lr) return true;
  return !PyErr_Occurred() && PyDict_SetItem(dict, names.last_lr, last_lr) == 0;
}

// Records LRScheduler.step in a registered scheduler's dict: `_step_count` and `last_epoch`
// advanced (`new_epoch` is `last_epoch + 1`), the flag torch's get_lr() call leaves False, `_last_lr`.
inline bool record_plain_step(PyObject* dict, int64_t step_count, PyObject* new_epoch, PyObject* last_lr) {
  return set_item(dict, names.step_count, PyLong_FromLongLong(step_count + 1)) &&
         PyDict_SetItem(dict, names.get_lr_called_within_step, Py_False) == 0 &&
         PyDict_SetItem(dict, names.last_epoch, new_epoch) == 0 && store_last_lr(dict, last_lr);
}

// torch's LRScheduler.step past its first, for a family whose get_lr() is a pass over the groups:
// `read(held, dict, last_epoch + 1, step_count + 1)` takes the family's inputs from the instance dict
// (false: torch's code judges them), `pass(groups, refill)` writes the groups and returns the new
// `_last_lr` (None: torch's code runs the step). True; False with nothing changed.
template <typename Read, typename Pass>
PyObject* counted_step(PyObject* scheduler, Read&& read, Pass&& pass) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return nullptr;
  PyObject* d = dict.get();
  int64_t last_epoch, step_count;
  if (!read_plain_counters(d, &last_epoch, &step_count)) return declined();
  Ref new_epoch(PyLong_FromLongLong(last_epoch + 1));
  if (!new_epoch) return nullptr;
  Held held;
  PyObject* optimizer = read(held, d, last_epoch + 1, step_count + 1) ? optimizer_of(held, d) : nullptr;
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return declined();
  Ref last_lr(pass(groups.get(), LastLrOwner{d}));
  if (!last_lr) return nullptr;
  if (last_lr.get() == Py_None) Py_RETURN_FALSE;
  if (!record_plain_step(d, step_count, new_epoch.get(), last_lr.get())) return nullptr;
  Py_RETURN_TRUE;
}

// A family's get_lr() for its Python step, which has advanced the counters: the same `read` as its
// plain step, at the counters as they are, and `pass(groups)`. None for torch's code.
template <typename Read, typename Pass>
PyObject* get_lr_from_dict(PyObject* scheduler, Read&& read, Pass&& pass) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return nullptr;
  Held held;
  int64_t last_epoch, step_count;
  PyObject* optimizer = nullptr;
  if (read_dict_int64(dict.get(), names.last_epoch, &last_epoch) &&
      read_dict_int64(dict.get(), names.step_count, &step_count) &&
      exact_counters(last_epoch, step_count) && read(held, dict.get(), last_epoch, step_count))
    optimizer = optimizer_of(held, dict.get());
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return PyErr_Occurred() ? nullptr : reference_path();
  return pass(groups.get());
}

}  // namespace schedx
