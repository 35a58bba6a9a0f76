// The Schedule family: LambdaLR, MultiplicativeLR and ScheduleLR whose callables are compiled
// schedules (schedx/schedules/, rules/expr.h), one per group, and the checks that a trace still holds
// (its guards, its callables) that the Python layer's cache shares. LambdaLR's and MultiplicativeLR's
// arithmetic with factors their untraced lambdas returned is here too.
#include "py/family.h"
#include "rules/expr.h"

#include <structmember.h>

namespace schedx {
namespace {

// scale_by_factors(groups, base_lrs, factors, from_base): LambdaLR (base_lr * factor) and
// MultiplicativeLR (lr * factor), with the factors the user's lambdas returned.
PyObject* scale_by_factors(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("scale_by_factors", nargs, 4)) return nullptr;
  PyObject* groups = args[0];
  PyObject* base_lrs = args[1];
  PyObject* factors = args[2];
  const int from_base = PyObject_IsTrue(args[3]);
  if (from_base < 0) return nullptr;
  if (!PyList_CheckExact(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  if (!is_list_of_length(factors, n) || (from_base && !is_list_of_length(base_lrs, n)))
    return reference_path();
  return write_groups(groups, MomentumKey::None,
                      [&](Py_ssize_t i, PyObject*, double lr, GroupResult* r) {
                        double start = lr, factor;
                        if (from_base && !read_list_real(base_lrs, i, &start)) return false;
                        if (!read_list_real(factors, i, &factor)) return false;
                        // An int base LR times an int factor is an int in torch.
                        if (from_base && PyLong_CheckExact(PyList_GET_ITEM(base_lrs, i)) &&
                            PyLong_CheckExact(PyList_GET_ITEM(factors, i)))
                          return false;
                        r->lr = start * factor;
                        return true;
                      });
}

// A compiled schedule (schedx/schedules/_expression.py), as the Python layer hands it over: a tuple
// (code: bytes of int32 (op, arg) pairs, consts: bytes of doubles, absolute: bool). An absolute
// schedule's value is the LR itself; any other's is a factor of the group's initial LR.
struct ScheduleProgram {
  ExprCode code;
  bool absolute;
};

bool read_schedule_program(PyObject* obj, ScheduleProgram* out) {
  if (!PyTuple_CheckExact(obj) || PyTuple_GET_SIZE(obj) != 3) return false;
  PyObject* code = PyTuple_GET_ITEM(obj, 0);
  PyObject* consts = PyTuple_GET_ITEM(obj, 1);
  if (!PyBytes_CheckExact(code) || !PyBytes_CheckExact(consts) ||
      PyBytes_GET_SIZE(code) % (2 * sizeof(int32_t)) != 0 ||
      PyBytes_GET_SIZE(consts) % sizeof(double) != 0)
    return false;
  const Py_ssize_t n_instructions = PyBytes_GET_SIZE(code) / (2 * sizeof(int32_t));
  if (n_instructions > kMaxExprInstructions) return false;
  out->code.code = reinterpret_cast<const int32_t*>(PyBytes_AS_STRING(code));
  out->code.n_instructions = static_cast<int32_t>(n_instructions);
  out->code.consts = reinterpret_cast<const double*>(PyBytes_AS_STRING(consts));
  out->code.n_consts = static_cast<int32_t>(PyBytes_GET_SIZE(consts) / sizeof(double));
  out->absolute = PyTuple_GET_ITEM(obj, 2) == Py_True;
  return true;
}

// The LR a schedule gives a group at `step`: its value (absolute) or `base_lr * value`, as LambdaLR
// multiplies.
bool schedule_lr(const ScheduleProgram& program, int64_t step, double base_lr, double* lr) {
  PyNum value;
  if (!eval_expr(program.code, step, base_lr, &value)) return false;
  *lr = program.absolute ? value.v : base_lr * value.v;
  return true;
}

// LambdaLR's get_lr() with compiled lambdas (`base_lr * factor`) or ScheduleLR's, one program per
// group; without from_base, MultiplicativeLR's (`lr * factor`). A factor is computed once for the
// groups that share a program.
PyObject* schedule_pass(PyObject* groups, PyObject* base_lrs, PyObject* programs, int64_t epoch,
                        bool from_base, const LastLrOwner& refill = {}) {
  if (!PyList_CheckExact(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  if ((from_base && !is_list_of_length(base_lrs, n)) || !PyTuple_CheckExact(programs) ||
      PyTuple_GET_SIZE(programs) != n)
    return reference_path();
  PyObject* shared = nullptr;  // the program whose factor is `shared_factor`
  PyNum shared_factor{0.0, false};
  return write_groups(groups, MomentumKey::None,
                      [&](Py_ssize_t i, PyObject*, double lr, GroupResult* r) {
                        double start = lr;
                        ScheduleProgram program;
                        PyObject* obj = PyTuple_GET_ITEM(programs, i);
                        if ((from_base && !read_list_real(base_lrs, i, &start)) ||
                            !read_schedule_program(obj, &program) || (program.absolute && !from_base))
                          return false;
                        // Where Python's value is an int (an int factor times an int base LR, an
                        // absolute schedule's int), or reads an int base LR the program takes as a
                        // float, Python's code gives it.
                        const bool int_base = from_base && PyLong_CheckExact(PyList_GET_ITEM(base_lrs, i));
                        if (program.absolute) {
                          PyNum value;
                          if (int_base || !eval_expr(program.code, epoch, start, &value) || value.is_int)
                            return false;
                          r->lr = value.v;
                          return true;
                        }
                        if (obj != shared) {
                          if (!eval_expr(program.code, epoch, start, &shared_factor)) return false;
                          shared = obj;
                        }
                        if (int_base && shared_factor.is_int) return false;
                        r->lr = start * shared_factor.v;
                        return true;
                      },
                      refill);
}

// schedule_step(groups, base_lrs, programs, epoch, from_base): schedule_pass.
PyObject* schedule_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("schedule_step", nargs, 5)) return nullptr;
  const int from_base = PyObject_IsTrue(args[4]);
  if (from_base < 0) return nullptr;
  int64_t epoch;
  if (!read_int64(args[3], &epoch)) return reference_path();
  return schedule_pass(args[0], args[1], args[2], epoch, from_base);
}

// A guard of schedx/schedules/_tracer.py's trace: (where, key, value), or (where, key) where the trace found nothing.
// It holds while `where` still gives the very object the trace read: the item `key` of a dict, the
// attribute `key` of a function or partial, the contents of a cell (key None), or for a tuple of keys,
// exactly those keys of a dict, bound to the objects of the tuple `value`. No Python code runs.
bool guard_holds(PyObject* guard) {
  if (!PyTuple_CheckExact(guard) || PyTuple_GET_SIZE(guard) < 2 || PyTuple_GET_SIZE(guard) > 3)
    return false;
  PyObject* where = PyTuple_GET_ITEM(guard, 0);
  PyObject* key = PyTuple_GET_ITEM(guard, 1);
  PyObject* expected = PyTuple_GET_SIZE(guard) == 3 ? PyTuple_GET_ITEM(guard, 2) : nullptr;
  if (key == Py_None) return PyCell_Check(where) && PyCell_GET(where) == expected;
  if (PyTuple_CheckExact(key)) {
    if (!PyDict_CheckExact(where) || expected == nullptr || !PyTuple_CheckExact(expected) ||
        PyTuple_GET_SIZE(expected) != PyTuple_GET_SIZE(key) ||
        PyDict_GET_SIZE(where) != PyTuple_GET_SIZE(key))
      return false;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key); ++i)
      if (PyDict_GetItemWithError(where, PyTuple_GET_ITEM(key, i)) != PyTuple_GET_ITEM(expected, i))
        return false;
    return true;
  }
  if (!PyUnicode_CheckExact(key)) return false;
  if (PyDict_CheckExact(where)) return PyDict_GetItemWithError(where, key) == expected;
  if (PyFunction_Check(where)) {  // the attributes a trace guards, without a lookup (None: unset)
    PyObject* found = nullptr;
    if (PyUnicode_CompareWithASCIIString(key, "__code__") == 0) found = PyFunction_GET_CODE(where);
    else if (PyUnicode_CompareWithASCIIString(key, "__defaults__") == 0) found = PyFunction_GET_DEFAULTS(where);
    else if (PyUnicode_CompareWithASCIIString(key, "__kwdefaults__") == 0) found = PyFunction_GET_KW_DEFAULTS(where);
    else return false;
    return (found ? found : Py_None) == expected;
  }
  Ref found(PyObject_GetAttr(where, key));
  return found && found.get() == expected;
}

bool all_guards_hold(PyObject* guards) {
  if (!PyTuple_CheckExact(guards)) return false;
  for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(guards); ++k)
    if (!guard_holds(PyTuple_GET_ITEM(guards, k))) return false;
  return true;
}

// guards_hold(guards): whether every guard of a trace holds (schedx/schedules/_tracer.py's guards_hold).
PyObject* guards_hold(PyObject*, PyObject* guards) {
  const bool hold = all_guards_hold(guards);
  PyErr_Clear();  // a lookup that raised: the guard does not hold
  return PyBool_FromLong(hold);
}

// Whether `refs` (a _CompiledSchedules' weak references) refer to the items of the list `callables`,
// in order. Only addresses are compared: nothing is dereferenced.
bool refers_to_each(PyObject* refs, PyObject* callables) {
  if (!PyTuple_CheckExact(refs) || !PyList_CheckExact(callables) ||
      PyTuple_GET_SIZE(refs) != PyList_GET_SIZE(callables))
    return false;
  for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(refs); ++k) {
    PyObject* ref = PyTuple_GET_ITEM(refs, k);
    if (!PyWeakref_CheckRefExact(ref)) return false;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject* target = nullptr;
    if (PyWeakref_GetRef(ref, &target) < 0) return false;
    Py_XDECREF(target);  // alive: the list holds it
#else
    PyObject* target = PyWeakref_GET_OBJECT(ref);
#endif
    if (target != PyList_GET_ITEM(callables, k)) return false;
  }
  return true;
}

// same_callables(refs, callables): refers_to_each, for the Python layer's cache check.
PyObject* same_callables(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("same_callables", nargs, 2)) return nullptr;
  const bool same = refers_to_each(args[0], args[1]);
  PyErr_Clear();
  return PyBool_FromLong(same);
}

// The object in `obj`'s slot `slot` (a member descriptor), borrowed; null where `obj` has no such
// slot or it is unset. Read as the descriptor reads it, without running Python code.
PyObject* slot_value(PyObject* slot, PyObject* obj) {
  if (Py_TYPE(slot) != &PyMemberDescr_Type) return nullptr;
  auto* member = reinterpret_cast<PyMemberDescrObject*>(slot);
  if (member->d_member->type != T_OBJECT_EX || !PyObject_TypeCheck(obj, PyDescr_TYPE(member)))
    return nullptr;
  return *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(obj) + member->d_member->offset);
}

// The programs of a registered LambdaLR's, MultiplicativeLR's or ScheduleLR's callables (the list
// in its dict under `cls.setting_names[0]`) from the Python layer's cache (its `_compiled` slot,
// whose descriptor is `cls.extra[0]`), as schedx/_stepping.py's _compiled_schedules gives them when its
// entry is still valid; null without an error when there is none (not traced yet, a
// lambda that cannot be traced, a guard that no longer holds, an LR schedule where a factor is
// due): the Python step then traces again or calls the lambdas.
PyObject* cached_programs(const PlainClass& cls, PyObject* scheduler, PyObject* dict) {
  Held held;
  PyObject* callables =
      held.hold(PyDict_GetItemWithError(dict, PyTuple_GET_ITEM(cls.setting_names, 0)));
  PyObject* entry = slot_value(PyTuple_GET_ITEM(cls.extra, 0), scheduler);
  // The entry is a _CompiledSchedules: (weak references to the callables, programs, guards,
  // gives_lrs, retraces, exact_on_device).
  if (callables == nullptr || entry == nullptr || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 6)
    return nullptr;
  held.hold(entry);
  PyObject* programs = PyTuple_GET_ITEM(entry, 1);
  PyObject* guards = PyTuple_GET_ITEM(entry, 2);
  const bool factors_only = PyTuple_GET_ITEM(cls.extra, 1) == Py_True;
  // schedx/_stepping.py's _same_objects: the same callables, by identity (no __eq__ runs).
  if (programs == Py_None || (factors_only && PyTuple_GET_ITEM(entry, 3) != Py_False) ||
      !refers_to_each(PyTuple_GET_ITEM(entry, 0), callables))
    return nullptr;
  if (!all_guards_hold(guards)) return nullptr;
  Py_INCREF(programs);
  return programs;
}

// A registered LambdaLR's, MultiplicativeLR's or ScheduleLR's plain step with its callables traced:
// torch's LRScheduler.step with schedule_pass as get_lr(). True; False with nothing changed.
PyObject* plain_schedule_step(const PlainClass& cls, PyObject* scheduler, PyObject* const*) {
  const bool from_base = PyTuple_GET_ITEM(cls.extra, 2) == Py_True;
  PyObject* base_lrs = Py_None;
  PyObject* programs = nullptr;
  int64_t epoch = 0;
  auto read = [&](Held& held, PyObject* d, int64_t new_epoch, int64_t) {
    // MultiplicativeLR's construction step keeps the LRs; absent, `_is_initial` is the class's False.
    PyObject* is_initial = PyDict_GetItemWithError(d, names.is_initial);
    if (!from_base && is_initial != nullptr && is_initial != Py_False) return false;
    if (from_base) base_lrs = held.hold(PyDict_GetItemWithError(d, names.base_lrs));
    Ref cached(base_lrs ? cached_programs(cls, scheduler, d) : nullptr);
    PyErr_Clear();  // whatever the Python step would raise there, it raises itself
    programs = held.hold(cached.get());
    epoch = new_epoch;
    return programs != nullptr;
  };
  return counted_step(scheduler, read, [&](PyObject* groups, const LastLrOwner& refill) {
    return schedule_pass(groups, base_lrs, programs, epoch, from_base, refill);
  });
}

// eval_schedule(program, step, base_lr): the program's value as a Python int or float, or None where
// Python would raise (or an int leaves the exact range).
PyObject* eval_schedule(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("eval_schedule", nargs, 3)) return nullptr;
  ScheduleProgram program;
  int64_t step;
  double base_lr;
  if (!read_schedule_program(args[0], &program) || !read_int64(args[1], &step) ||
      !read_real(args[2], &base_lr)) {
    PyErr_SetString(PyExc_TypeError, "schedx: eval_schedule(program, int step, float base_lr)");
    return nullptr;
  }
  PyNum value;
  if (!eval_expr(program.code, step, base_lr, &value)) Py_RETURN_NONE;
  return value.is_int ? PyLong_FromDouble(value.v) : PyFloat_FromDouble(value.v);
}

// record_schedule(program, steps, base_lr, out): the LR a group with initial LR `base_lr` has at steps
// 0 .. steps - 1, into the float64 array at address `out`; returns how many steps succeeded (the curve
// stops where Python would raise). A custom schedule's curve in one call (schedx/plot.py).
PyObject* record_schedule(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("record_schedule", nargs, 4)) return nullptr;
  ScheduleProgram program;
  int64_t steps, address;
  double base_lr;
  if (!read_schedule_program(args[0], &program) || !read_int64(args[1], &steps) ||
      !read_real(args[2], &base_lr) || !read_int64(args[3], &address) || address == 0) {
    PyErr_SetString(PyExc_TypeError,
                    "schedx: record_schedule(program, int steps, float base_lr, int address)");
    return nullptr;
  }
  double* out = reinterpret_cast<double*>(static_cast<intptr_t>(address));
  int64_t t = 0;
  while (t < steps && schedule_lr(program, t, base_lr, &out[t])) ++t;
  return PyLong_FromLongLong(t);
}

// Registered with (the attribute holding its callables,) and (the `_compiled` slot's member
// descriptor, factors only (a lambda), from the base LR).
bool accepts_schedule(const PlainClass& cls) {
  return PyTuple_GET_SIZE(cls.setting_names) == 1 && PyTuple_CheckExact(cls.extra) &&
         PyTuple_GET_SIZE(cls.extra) == 3 &&
         Py_TYPE(PyTuple_GET_ITEM(cls.extra, 0)) == &PyMemberDescr_Type;
}

PyMethodDef schedule_methods[] = {
    {"scale_by_factors", SCHEDX_FASTCALL(scale_by_factors), METH_FASTCALL,
     "LambdaLR / MultiplicativeLR arithmetic with the factors the lambdas returned."},
    {"schedule_step", SCHEDX_FASTCALL(schedule_step), METH_FASTCALL,
     "LambdaLR / ScheduleLR with compiled schedules, one per group."},
    {"guards_hold", guards_hold, METH_O, "Whether every guard of a traced lambda holds."},
    {"same_callables", SCHEDX_FASTCALL(same_callables), METH_FASTCALL,
     "Whether weak references refer to a list's items, in order."},
    {"eval_schedule", SCHEDX_FASTCALL(eval_schedule), METH_FASTCALL,
     "A compiled schedule's value at one step."},
    {"record_schedule", SCHEDX_FASTCALL(record_schedule), METH_FASTCALL,
     "A compiled schedule's LR over many steps, into a float64 array."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

const EngineFamily kScheduleFamily{0, accepts_schedule, plain_schedule_step, schedule_methods};

}  // namespace schedx
