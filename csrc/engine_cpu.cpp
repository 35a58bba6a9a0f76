// The fused CPU pass: one call per scheduler step reads every group's "lr" straight from the optimizer's
// param-group dicts, applies the rule from formulas.h, and writes the new floats (and momentum / betas)
// back, returning the list torch keeps as `_last_lr`.
//
// Every entry point checks all of its inputs before it writes anything. When a value is not a Python
// float or int (a tensor LR, a numpy float32, None), when a key is missing, or when Python's arithmetic
// would raise, it writes nothing and returns None: the caller then runs torch's own code for that step,
// which gives torch's result or torch's exception. The optimizer is never left half-updated.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <memory>
#include <new>

#include "formulas.h"

namespace schedx {
namespace {

// Interned names: param-group keys, OneCycleLR phase keys and scheduler attributes.
struct Names {
  PyObject* lr;
  PyObject* momentum;
  PyObject* betas;
  PyObject* swa_lr;
  PyObject* end_step;
  PyObject* start_lr;
  PyObject* end_lr;
  PyObject* start_momentum;
  PyObject* end_momentum;
  PyObject* optimizer;
  PyObject* param_groups;
  PyObject* base_lrs;
  PyObject* last_epoch;
  PyObject* step_count;
  PyObject* is_initial;
  PyObject* mode;
  PyObject* threshold_mode;
  PyObject* threshold;
  PyObject* patience;
  PyObject* cooldown;
  PyObject* best;
  PyObject* num_bad_epochs;
  PyObject* cooldown_counter;
  PyObject* factor;
  PyObject* eps;
  PyObject* min_lrs;
};
Names names;

// Storage for one value per group, owned by one call: on the stack for small group counts, on the
// heap beyond. Nothing is shared between calls, so a step re-entered from Python (a finalizer run by an
// allocation) cannot disturb a step in progress.
template <typename T>
class GroupBuffer {
 public:
  explicit GroupBuffer(Py_ssize_t n) {
    if (n > kInline) {
      heap_.reset(new (std::nothrow) T[n]);
      data_ = heap_.get();
    }
  }
  bool ok() const { return data_ != nullptr; }
  T* data() { return data_; }
  T& operator[](Py_ssize_t i) { return data_[i]; }

 private:
  static constexpr Py_ssize_t kInline = 32;
  T inline_[kInline];
  std::unique_ptr<T[]> heap_;
  T* data_ = inline_;
};

// An owned reference, released at the end of the scope.
class Ref {
 public:
  explicit Ref(PyObject* p) : p_(p) {}
  ~Ref() { Py_XDECREF(p_); }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  PyObject* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  PyObject* p_;
};

PyObject* reference_path() { Py_RETURN_NONE; }

// A Python float or int as a double. Subclasses (numpy.float64, bool) are left to torch's code: its
// arithmetic on them returns their type, which a float written here would not match.
bool read_real(PyObject* v, double* out) {
  if (PyFloat_CheckExact(v)) {
    *out = PyFloat_AS_DOUBLE(v);
    return true;
  }
  if (PyLong_CheckExact(v)) {
    const double d = PyLong_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    *out = d;
    return true;
  }
  return false;
}

bool read_int64(PyObject* v, int64_t* out) {
  if (!PyLong_CheckExact(v)) return false;
  int overflow = 0;
  const long long value = PyLong_AsLongLongAndOverflow(v, &overflow);
  if (overflow != 0 || (value == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return false;
  }
  *out = value;
  return true;
}

bool read_reals(PyObject* const* args, Py_ssize_t n, double* out) {
  for (Py_ssize_t i = 0; i < n; ++i)
    if (!read_real(args[i], &out[i])) return false;
  return true;
}

// An attribute of a scheduler, or null (with no error set) when it has none.
PyObject* attribute(PyObject* obj, PyObject* name) {
  PyObject* v = PyObject_GetAttr(obj, name);
  if (v == nullptr) PyErr_Clear();
  return v;
}

bool read_attr_real(PyObject* obj, PyObject* name, double* out) {
  Ref v(attribute(obj, name));
  return v && read_real(v.get(), out);
}

bool read_attr_int64(PyObject* obj, PyObject* name, int64_t* out) {
  Ref v(attribute(obj, name));
  return v && read_int64(v.get(), out);
}

bool read_attr_bool(PyObject* obj, PyObject* name, bool* out) {
  Ref v(attribute(obj, name));
  if (!v) return false;
  const int truth = PyObject_IsTrue(v.get());
  if (truth < 0) {
    PyErr_Clear();
    return false;
  }
  *out = truth;
  return true;
}

// param_groups as torch keeps them: a list of plain dicts.
bool is_group_list(PyObject* groups) {
  if (groups == nullptr || !PyList_CheckExact(groups)) return false;
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  for (Py_ssize_t i = 0; i < n; ++i)
    if (!PyDict_CheckExact(PyList_GET_ITEM(groups, i))) return false;
  return true;
}

PyObject* group_at(PyObject* groups, Py_ssize_t i) { return PyList_GET_ITEM(groups, i); }

bool read_group_real(PyObject* group, PyObject* key, double* out) {
  PyObject* v = PyDict_GetItemWithError(group, key);
  if (v == nullptr) {
    PyErr_Clear();
    return false;
  }
  return read_real(v, out);
}

// A per-group list the scheduler holds (base_lrs, max_lrs, ...), read at index i.
bool read_list_real(PyObject* list, Py_ssize_t i, double* out) {
  return read_real(PyList_GET_ITEM(list, i), out);
}

bool is_list_of_length(PyObject* list, Py_ssize_t n) {
  return list != nullptr && PyList_CheckExact(list) && PyList_GET_SIZE(list) == n;
}

bool read_all_lrs(PyObject* groups, Py_ssize_t n, double* lrs) {
  for (Py_ssize_t i = 0; i < n; ++i)
    if (!read_group_real(group_at(groups, i), names.lr, &lrs[i])) return false;
  return true;
}

bool has_betas_sequence(PyObject* group) {
  PyObject* betas = PyDict_GetItemWithError(group, names.betas);
  if (betas == nullptr) {
    PyErr_Clear();
    return false;
  }
  return PyTuple_CheckExact(betas) || PyList_CheckExact(betas);
}

PyObject* group_changed_error() {
  PyErr_SetString(PyExc_RuntimeError,
                  "schedx: an optimizer param group was changed while a scheduler step was "
                  "writing it");
  return nullptr;
}

// The object written as a group's momentum: a float, or `betas` with its first entry replaced,
// built as torch builds it: (momentum, *betas[1:]).
PyObject* new_momentum_object(PyObject* group, double momentum, bool use_beta1) {
  if (!use_beta1) return PyFloat_FromDouble(momentum);
  PyObject* found = PyDict_GetItemWithError(group, names.betas);
  if (found == nullptr || !(PyTuple_CheckExact(found) || PyList_CheckExact(found)))
    return PyErr_Occurred() ? nullptr : group_changed_error();
  Ref betas((Py_INCREF(found), found));
  const Py_ssize_t len = PySequence_Fast_GET_SIZE(found);
  Ref first(PyFloat_FromDouble(momentum));
  if (!first) return nullptr;
  PyObject* tuple = PyTuple_New(len > 0 ? len : 1);
  if (tuple == nullptr) return nullptr;
  Py_INCREF(first.get());
  PyTuple_SET_ITEM(tuple, 0, first.get());
  // The tuple's allocation may have run Python code that resized a list of betas.
  const Py_ssize_t kept = PySequence_Fast_GET_SIZE(found);
  for (Py_ssize_t k = 1; k < len; ++k) {
    PyObject* item = k < kept ? PySequence_Fast_ITEMS(found)[k] : Py_None;
    Py_INCREF(item);
    PyTuple_SET_ITEM(tuple, k, item);
  }
  return tuple;
}

// `_param_groups_val_list(optimizer, "lr")` for float LRs: the current lr objects, in a new list.
PyObject* current_lrs(PyObject* groups) {
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  PyObject* last_lr = PyList_New(n);
  if (last_lr == nullptr) return nullptr;
  if (PyList_GET_SIZE(groups) != n) {
    Py_DECREF(last_lr);
    return group_changed_error();
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* lr = PyDict_GetItemWithError(group_at(groups, i), names.lr);
    if (lr == nullptr) {
      Py_DECREF(last_lr);
      return PyErr_Occurred() ? nullptr : group_changed_error();
    }
    Py_INCREF(lr);
    PyList_SET_ITEM(last_lr, i, lr);
  }
  return last_lr;
}

// Writes the step's results and returns the new `_last_lr`, or None (writing nothing) when a group's
// current lr is not a float or an int. Every object is created first, so a failed allocation writes
// nothing; then momentum (when given) and lr are stored. `write` flags the groups
// whose lr changes (null: all of them); the others keep their lr object, as torch's would.
//
// Creating objects may run Python code (a finalizer started by the garbage collector), and storing a
// value releases the one it replaces, which may too. So this function re-checks the group list's size
// and holds each group while writing it.
PyObject* commit_step(PyObject* groups, Py_ssize_t n, const double* lrs, const char* write,
                      const double* momenta, bool use_beta1) {
  Ref last_lr(PyList_New(n));
  if (!last_lr) return nullptr;
  Ref new_momenta(momenta != nullptr ? PyList_New(n) : nullptr);
  if (momenta != nullptr && !new_momenta) return nullptr;
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (PyList_GET_SIZE(groups) != n) return group_changed_error();
    PyObject* group = group_at(groups, i);
    PyObject* lr;
    if (write == nullptr || write[i]) {
      // torch fills a tensor lr in place and keeps other types' arithmetic: replace floats and ints only.
      double current;
      if (!read_group_real(group, names.lr, &current)) return reference_path();
      lr = PyFloat_FromDouble(lrs[i]);
    } else {
      lr = PyDict_GetItemWithError(group, names.lr);
      if (lr == nullptr) return PyErr_Occurred() ? nullptr : group_changed_error();
      Py_INCREF(lr);
    }
    if (lr == nullptr) return nullptr;
    PyList_SET_ITEM(last_lr.get(), i, lr);
    if (momenta != nullptr) {
      PyObject* m = new_momentum_object(group, momenta[i], use_beta1);
      if (m == nullptr) return nullptr;
      PyList_SET_ITEM(new_momenta.get(), i, m);
    }
  }
  PyObject* momentum_key = use_beta1 ? names.betas : names.momentum;
  for (Py_ssize_t i = 0; i < n && i < PyList_GET_SIZE(groups); ++i) {
    Ref group((Py_INCREF(group_at(groups, i)), group_at(groups, i)));
    if (!PyDict_Check(group.get())) return group_changed_error();
    if (momenta != nullptr &&
        PyDict_SetItem(group.get(), momentum_key, PyList_GET_ITEM(new_momenta.get(), i)) < 0)
      return nullptr;
    if ((write == nullptr || write[i]) &&
        PyDict_SetItem(group.get(), names.lr, PyList_GET_ITEM(last_lr.get(), i)) < 0)
      return nullptr;
  }
  Py_INCREF(last_lr.get());
  return last_lr.get();
}

// Applies one StepPlan to every group.
PyObject* apply_plan(PyObject* groups, PyObject* base_lrs, const StepPlan& plan) {
  if (!plan.ok || !is_group_list(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  const bool reads_base = rule_reads_base_lr(plan.rule);
  if (reads_base && !is_list_of_length(base_lrs, n)) return reference_path();
  GroupBuffer<double> lrs(n);
  if (!lrs.ok()) return PyErr_NoMemory();
  if (!read_all_lrs(groups, n, lrs.data())) return reference_path();
  if (plan.rule == GroupRule::Keep) return current_lrs(groups);
  for (Py_ssize_t i = 0; i < n; ++i) {
    double base_lr = 0.0;
    if (reads_base && !read_list_real(base_lrs, i, &base_lr)) return reference_path();
    lrs[i] = apply_group_rule(plan, lrs[i], base_lr);
  }
  return commit_step(groups, n, lrs.data(), nullptr, nullptr, false);
}

bool parse_kind(PyObject* obj, Kind* kind) {
  const long value = PyLong_AsLong(obj);
  if (value == -1 && PyErr_Occurred()) return false;
  if (value < 0 || value >= kNumKinds) {
    PyErr_Format(PyExc_ValueError, "schedx: unknown scheduler kind %ld", value);
    return false;
  }
  *kind = static_cast<Kind>(value);
  return true;
}

bool check_nargs(const char* name, Py_ssize_t nargs, Py_ssize_t expected) {
  if (nargs == expected) return true;
  PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected, nargs);
  return false;
}

// What every LRScheduler holds: its optimizer's param groups, base_lrs and position.
struct SchedulerView {
  Ref groups;
  Ref base_lrs;
  double last_epoch = 0.0;
  int64_t step_count = 0;
  bool is_initial = false;
  bool ok = false;

  explicit SchedulerView(PyObject* sched)
      : groups(param_groups_of(sched)), base_lrs(attribute(sched, names.base_lrs)) {
    ok = groups && base_lrs && read_attr_real(sched, names.last_epoch, &last_epoch) &&
         read_attr_int64(sched, names.step_count, &step_count) &&
         read_attr_bool(sched, names.is_initial, &is_initial);
  }

  static PyObject* param_groups_of(PyObject* sched) {
    Ref optimizer(attribute(sched, names.optimizer));
    return optimizer ? attribute(optimizer.get(), names.param_groups) : nullptr;
  }
};

// A StepPlan scheduler's settings (csrc/kinds.h), given as a tuple whose items are attribute names of
// the scheduler (read now, so edits between steps count) or values.
bool read_settings(PyObject* sched, PyObject* settings, double* h) {
  if (!PyTuple_CheckExact(settings) || PyTuple_GET_SIZE(settings) > kMaxSettings) return false;
  const Py_ssize_t n = PyTuple_GET_SIZE(settings);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyTuple_GET_ITEM(settings, i);
    const bool ok = PyUnicode_CheckExact(item) ? read_attr_real(sched, item, &h[i])
                                               : read_real(item, &h[i]);
    if (!ok) return false;
  }
  for (Py_ssize_t i = n; i < kMaxSettings; ++i) h[i] = 0.0;
  return true;
}

// recursive_step(scheduler, kind, settings): the chainable get_lr() of a StepPlan scheduler.
PyObject* recursive_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("recursive_step", nargs, 3)) return nullptr;
  Kind kind;
  if (!parse_kind(args[1], &kind)) return nullptr;
  double h[kMaxSettings];
  const SchedulerView s(args[0]);
  if (!s.ok || !read_settings(args[0], args[2], h)) return reference_path();
  return apply_plan(s.groups.get(), s.base_lrs.get(),
                    plan_recursive_step(kind, s.last_epoch, s.step_count, s.is_initial, h));
}

// closed_form_step(scheduler, kind, settings): _get_closed_form_lr() of a StepPlan scheduler.
PyObject* closed_form_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("closed_form_step", nargs, 3)) return nullptr;
  Kind kind;
  if (!parse_kind(args[1], &kind)) return nullptr;
  double h[kMaxSettings];
  const SchedulerView s(args[0]);
  if (!s.ok || !read_settings(args[0], args[2], h)) return reference_path();
  return apply_plan(s.groups.get(), s.base_lrs.get(), plan_closed_form_step(kind, s.last_epoch, h));
}

// scale_by_factors(groups, base_lrs, factors, from_base): LambdaLR (base_lr * factor) and
// MultiplicativeLR (lr * factor), with the factors the user's lambdas returned.
PyObject* scale_by_factors(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("scale_by_factors", nargs, 4)) return nullptr;
  PyObject* groups = args[0];
  PyObject* base_lrs = args[1];
  PyObject* factors = args[2];
  const int from_base = PyObject_IsTrue(args[3]);
  if (from_base < 0) return nullptr;
  if (!is_group_list(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  if (!is_list_of_length(factors, n)) return reference_path();
  if (from_base && !is_list_of_length(base_lrs, n)) return reference_path();
  GroupBuffer<double> lrs(n);
  if (!lrs.ok()) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < n; ++i) {
    double start, factor;
    const bool ok = from_base ? read_list_real(base_lrs, i, &start)
                              : read_group_real(group_at(groups, i), names.lr, &start);
    if (!ok || !read_list_real(factors, i, &factor)) return reference_path();
    lrs[i] = start * factor;
  }
  return commit_step(groups, n, lrs.data(), nullptr, nullptr, false);
}

// collect_lrs(groups): torch's `_param_groups_val_list(optimizer, "lr")` for float LRs.
PyObject* collect_lrs(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("collect_lrs", nargs, 1)) return nullptr;
  PyObject* groups = args[0];
  if (!is_group_list(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  for (Py_ssize_t i = 0; i < n; ++i) {
    double lr;
    if (!read_group_real(group_at(groups, i), names.lr, &lr)) return reference_path();
  }
  return current_lrs(groups);
}

// The value of CyclicLR's scale function for this step: the user's `scale_fn` (called once, not once
// per group) or the built-in one of `mode`. Sets `*raised` when the user's function raised.
bool cyclic_scale(PyObject* scale_fn, CyclicMode mode, double gamma, PyObject* epoch_obj,
                  double epoch, double cycle, bool by_cycle, double* out, bool* raised) {
  *raised = false;
  if (scale_fn == Py_None) return cyclic_builtin_scale(mode, gamma, by_cycle ? cycle : epoch, out);
  Ref arg(by_cycle ? PyLong_FromDouble(cycle) : (Py_INCREF(epoch_obj), epoch_obj));
  Ref value(arg ? PyObject_CallOneArg(scale_fn, arg.get()) : nullptr);
  if (!value) {
    *raised = true;
    return false;
  }
  return read_real(value.get(), out);
}

// cyclic_step(groups, base_lrs, max_lrs, epoch, total_size, step_ratio, mode, gamma, scale_fn,
//             scale_by_cycle, base_momentums, max_momentums, use_beta1)
// base_momentums is None when the momentum does not cycle.
PyObject* cyclic_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("cyclic_step", nargs, 13)) return nullptr;
  PyObject* groups = args[0];
  PyObject* base_lrs = args[1];
  PyObject* max_lrs = args[2];
  PyObject* base_momenta = args[10];
  PyObject* max_momenta = args[11];
  double epoch, total_size, step_ratio, gamma;
  int64_t mode;
  if (!read_real(args[3], &epoch) || !read_real(args[4], &total_size) ||
      !read_real(args[5], &step_ratio) || !read_int64(args[6], &mode) ||
      !read_real(args[7], &gamma) || !is_group_list(groups))
    return reference_path();
  const int by_cycle = PyObject_IsTrue(args[9]);
  const int use_beta1 = PyObject_IsTrue(args[12]);
  if (by_cycle < 0 || use_beta1 < 0) return nullptr;
  const bool cycle_momentum = base_momenta != Py_None;
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  if (!is_list_of_length(base_lrs, n) || !is_list_of_length(max_lrs, n)) return reference_path();
  if (cycle_momentum && (!is_list_of_length(base_momenta, n) || !is_list_of_length(max_momenta, n)))
    return reference_path();

  const CyclePosition pos = cyclic_position(epoch, total_size, step_ratio);
  if (!pos.ok) return reference_path();
  double scale;
  bool raised;
  if (!cyclic_scale(args[8], static_cast<CyclicMode>(mode), gamma, args[3], epoch, pos.cycle,
                    by_cycle, &scale, &raised))
    return raised ? nullptr : reference_path();
  // The user's scale_fn may have changed the groups or the lists.
  if (!is_group_list(groups) || PyList_GET_SIZE(groups) != n || !is_list_of_length(base_lrs, n) ||
      !is_list_of_length(max_lrs, n) ||
      (cycle_momentum && (!is_list_of_length(base_momenta, n) || !is_list_of_length(max_momenta, n))))
    return reference_path();

  GroupBuffer<double> lrs(n), momenta(n);
  if (!lrs.ok() || !momenta.ok()) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < n; ++i) {
    double base_lr, max_lr;
    if (!read_list_real(base_lrs, i, &base_lr) || !read_list_real(max_lrs, i, &max_lr))
      return reference_path();
    lrs[i] = cyclic_lr(base_lr, max_lr, pos.scale_factor, scale);
    if (!cycle_momentum) continue;
    double base_m, max_m;
    if (!read_list_real(base_momenta, i, &base_m) || !read_list_real(max_momenta, i, &max_m))
      return reference_path();
    if (use_beta1 && !has_betas_sequence(group_at(groups, i))) return reference_path();
    momenta[i] = cyclic_momentum(base_m, max_m, pos.scale_factor, scale);
  }
  return commit_step(groups, n, lrs.data(), nullptr, cycle_momentum ? momenta.data() : nullptr,
                     use_beta1);
}

// The keys one OneCycleLR phase anneals between. Borrowed from the phase dict, which the scheduler's
// `_schedule_phases` list keeps alive for the call.
struct PhaseKeys {
  PyObject* start_lr;
  PyObject* end_lr;
  PyObject* start_momentum;
  PyObject* end_momentum;
};

bool read_phase(PyObject* phase, double* end_step, PhaseKeys* keys) {
  if (!PyDict_CheckExact(phase)) return false;
  PyObject* end = PyDict_GetItemWithError(phase, names.end_step);
  keys->start_lr = PyDict_GetItemWithError(phase, names.start_lr);
  keys->end_lr = PyDict_GetItemWithError(phase, names.end_lr);
  keys->start_momentum = PyDict_GetItemWithError(phase, names.start_momentum);
  keys->end_momentum = PyDict_GetItemWithError(phase, names.end_momentum);
  if (PyErr_Occurred()) PyErr_Clear();
  return end != nullptr && keys->start_lr != nullptr && keys->end_lr != nullptr &&
         keys->start_momentum != nullptr && keys->end_momentum != nullptr &&
         read_real(end, end_step);
}

constexpr Py_ssize_t kMaxPhases = 8;

// one_cycle_step(groups, step, total_steps, phases, anneal_cos, cycle_momentum, use_beta1)
PyObject* one_cycle_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("one_cycle_step", nargs, 7)) return nullptr;
  PyObject* groups = args[0];
  PyObject* phases = args[3];
  double step, total_steps;
  if (!read_real(args[1], &step) || !read_real(args[2], &total_steps) || !is_group_list(groups) ||
      !PyList_CheckExact(phases))
    return reference_path();
  // torch raises "Tried to step ..." here; its own code says so.
  if (step > total_steps) return reference_path();
  const int anneal_cos = PyObject_IsTrue(args[4]);
  const int cycle_momentum = PyObject_IsTrue(args[5]);
  const int use_beta1 = PyObject_IsTrue(args[6]);
  if (anneal_cos < 0 || cycle_momentum < 0 || use_beta1 < 0) return nullptr;

  const Py_ssize_t n_phases = PyList_GET_SIZE(phases);
  if (n_phases < 1 || n_phases > kMaxPhases) return reference_path();
  double end_steps[kMaxPhases];
  PhaseKeys keys[kMaxPhases];
  for (Py_ssize_t p = 0; p < n_phases; ++p)
    if (!read_phase(PyList_GET_ITEM(phases, p), &end_steps[p], &keys[p])) return reference_path();
  const OneCyclePhase phase = one_cycle_phase(step, end_steps, static_cast<int32_t>(n_phases));
  double cos_out = 0.0;
  if (!phase.ok || (anneal_cos && !one_cycle_cos_out(phase.pct, &cos_out))) return reference_path();
  const PhaseKeys& k = keys[phase.index];
  auto anneal = [&](double start, double end) {
    return anneal_cos ? one_cycle_anneal_cos(start, end, cos_out)
                      : one_cycle_anneal_linear(start, end, phase.pct);
  };

  const Py_ssize_t n = PyList_GET_SIZE(groups);
  GroupBuffer<double> lrs(n), momenta(n);
  if (!lrs.ok() || !momenta.ok()) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* group = group_at(groups, i);
    double start, end;
    if (!read_group_real(group, k.start_lr, &start) || !read_group_real(group, k.end_lr, &end))
      return reference_path();
    lrs[i] = anneal(start, end);
    if (!cycle_momentum) continue;
    if (!read_group_real(group, k.start_momentum, &start) ||
        !read_group_real(group, k.end_momentum, &end))
      return reference_path();
    if (use_beta1 && !has_betas_sequence(group)) return reference_path();
    momenta[i] = anneal(start, end);
  }
  return commit_step(groups, n, lrs.data(), nullptr, cycle_momentum ? momenta.data() : nullptr,
                     use_beta1);
}

// swa_step(groups, step_count, anneal_epochs, cosine)
PyObject* swa_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("swa_step", nargs, 4)) return nullptr;
  PyObject* groups = args[0];
  int64_t step_count;
  double anneal_epochs;
  if (!read_int64(args[1], &step_count) || !read_real(args[2], &anneal_epochs) ||
      !is_group_list(groups))
    return reference_path();
  const int cosine = PyObject_IsTrue(args[3]);
  if (cosine < 0) return nullptr;
  const SwaAlphas alphas = swa_alphas(step_count, anneal_epochs, cosine);
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  GroupBuffer<double> lrs(n);
  if (!lrs.ok()) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* group = group_at(groups, i);
    double lr, target;
    if (!read_group_real(group, names.lr, &lr) || !read_group_real(group, names.swa_lr, &target))
      return reference_path();
    lrs[i] = swa_lr(lr, target, alphas);
  }
  return commit_step(groups, n, lrs.data(), nullptr, nullptr, false);
}

bool attr_equals(PyObject* obj, PyObject* name, const char* text) {
  Ref v(attribute(obj, name));
  return v && PyUnicode_Check(v.get()) && PyUnicode_CompareWithASCIIString(v.get(), text) == 0;
}

// torch's `_is_better` dispatch: anything that is not min/rel, min/abs or max/rel compares as max/abs.
PlateauCriterion plateau_criterion(PyObject* sched) {
  const bool min_mode = attr_equals(sched, names.mode, "min");
  const bool max_mode = attr_equals(sched, names.mode, "max");
  const bool rel = attr_equals(sched, names.threshold_mode, "rel");
  const bool abs = attr_equals(sched, names.threshold_mode, "abs");
  if (min_mode && rel) return PlateauCriterion::MinRel;
  if (min_mode && abs) return PlateauCriterion::MinAbs;
  if (max_mode && rel) return PlateauCriterion::MaxRel;
  return PlateauCriterion::MaxAbs;
}

bool set_attr(PyObject* obj, PyObject* name, PyObject* value) {
  if (value == nullptr) return false;
  const int rc = PyObject_SetAttr(obj, name, value);
  Py_DECREF(value);
  return rc == 0;
}

// torch's `_reduce_lr` for float LRs: the new lrs and which of them change. False when torch's own code
// must run it (min_lrs no longer matches the groups, or holds something other than floats and ints).
bool reduce_plateau_lrs(PyObject* sched, Py_ssize_t n, double factor, double eps, double* lrs,
                        char* write) {
  Ref min_lrs(attribute(sched, names.min_lrs));
  if (!is_list_of_length(min_lrs.get(), n)) return false;
  for (Py_ssize_t i = 0; i < n; ++i) {
    double min_lr;
    if (!read_list_real(min_lrs.get(), i, &min_lr)) return false;
    bool changes;
    lrs[i] = plateau_reduced_lr(lrs[i], factor, min_lr, eps, &changes);
    write[i] = changes;
  }
  return true;
}

// plateau_step(scheduler, groups, current): ReduceLROnPlateau.step after `last_epoch` is set.
PyObject* plateau_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("plateau_step", nargs, 3)) return nullptr;
  PyObject* sched = args[0];
  PyObject* groups = args[1];
  double current, factor, eps;
  PlateauState state;
  PlateauSettings settings;
  if (!read_real(args[2], &current) || !is_group_list(groups) ||
      !read_attr_real(sched, names.best, &state.best) ||
      !read_attr_int64(sched, names.num_bad_epochs, &state.num_bad_epochs) ||
      !read_attr_int64(sched, names.cooldown_counter, &state.cooldown_counter) ||
      !read_attr_int64(sched, names.cooldown, &settings.cooldown) ||
      !read_attr_real(sched, names.patience, &settings.patience) ||
      !read_attr_real(sched, names.threshold, &settings.threshold) ||
      !read_attr_real(sched, names.factor, &factor) || !read_attr_real(sched, names.eps, &eps))
    return reference_path();
  settings.criterion = plateau_criterion(sched);

  const Py_ssize_t n = PyList_GET_SIZE(groups);
  GroupBuffer<double> lrs(n);
  GroupBuffer<char> write(n);
  if (!lrs.ok() || !write.ok()) return PyErr_NoMemory();
  if (!read_all_lrs(groups, n, lrs.data())) return reference_path();

  const bool reduce = plateau_observe(&state, settings, current);
  if (reduce) {
    if (!reduce_plateau_lrs(sched, n, factor, eps, lrs.data(), write.data())) return reference_path();
    plateau_after_reduction(&state, settings);
  }
  Ref last_lr(reduce ? commit_step(groups, n, lrs.data(), write.data(), nullptr, false)
                     : current_lrs(groups));
  if (!last_lr || !set_attr(sched, names.best, PyFloat_FromDouble(state.best)) ||
      !set_attr(sched, names.num_bad_epochs, PyLong_FromLongLong(state.num_bad_epochs)) ||
      !set_attr(sched, names.cooldown_counter, PyLong_FromLongLong(state.cooldown_counter)))
    return nullptr;
  Py_INCREF(last_lr.get());
  return last_lr.get();
}

PyObject* kinds(PyObject*, PyObject*) {
  Ref table(PyDict_New());
  if (!table) return nullptr;
  const struct {
    const char* name;
    Kind kind;
  } rows[] = {
      {"StepLR", Kind::StepLR},
      {"MultiStepLR", Kind::MultiStepLR},
      {"ConstantLR", Kind::ConstantLR},
      {"LinearLR", Kind::LinearLR},
      {"ExponentialLR", Kind::ExponentialLR},
      {"PolynomialLR", Kind::PolynomialLR},
      {"CosineAnnealingLR", Kind::CosineAnnealingLR},
      {"CosineAnnealingWarmRestarts", Kind::CosineAnnealingWarmRestarts},
  };
  for (const auto& row : rows) {
    Ref value(PyLong_FromLong(static_cast<long>(row.kind)));
    if (!value || PyDict_SetItemString(table.get(), row.name, value.get()) < 0) return nullptr;
  }
  Py_INCREF(table.get());
  return table.get();
}

// METH_FASTCALL functions are stored in PyMethodDef as a PyCFunction.
#define SCHEDX_FASTCALL(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(f))

PyMethodDef methods[] = {
    {"recursive_step", SCHEDX_FASTCALL(recursive_step), METH_FASTCALL,
     "The chainable get_lr() of a StepPlan scheduler, applied to every group."},
    {"closed_form_step", SCHEDX_FASTCALL(closed_form_step), METH_FASTCALL,
     "The _get_closed_form_lr() of a StepPlan scheduler, applied to every group."},
    {"scale_by_factors", SCHEDX_FASTCALL(scale_by_factors), METH_FASTCALL,
     "LambdaLR / MultiplicativeLR arithmetic with the factors the lambdas returned."},
    {"cyclic_step", SCHEDX_FASTCALL(cyclic_step), METH_FASTCALL,
     "CyclicLR's get_lr(), momentum included."},
    {"one_cycle_step", SCHEDX_FASTCALL(one_cycle_step), METH_FASTCALL,
     "OneCycleLR's get_lr(), momentum included."},
    {"swa_step", SCHEDX_FASTCALL(swa_step), METH_FASTCALL, "SWALR's get_lr()."},
    {"plateau_step", SCHEDX_FASTCALL(plateau_step), METH_FASTCALL,
     "ReduceLROnPlateau's bookkeeping and reduction."},
    {"collect_lrs", SCHEDX_FASTCALL(collect_lrs), METH_FASTCALL,
     "Every group's current lr, as torch's _param_groups_val_list."},
    {"kinds", kinds, METH_NOARGS, "The Kind enum of csrc/kinds.h, by name."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "schedx._C", "schedx's fused CPU engine (see csrc/engine_cpu.cpp).", -1,
    methods, nullptr, nullptr, nullptr, nullptr};

bool intern_names() {
  const struct {
    PyObject** slot;
    const char* text;
  } table[] = {
      {&names.lr, "lr"},
      {&names.momentum, "momentum"},
      {&names.betas, "betas"},
      {&names.swa_lr, "swa_lr"},
      {&names.end_step, "end_step"},
      {&names.start_lr, "start_lr"},
      {&names.end_lr, "end_lr"},
      {&names.start_momentum, "start_momentum"},
      {&names.end_momentum, "end_momentum"},
      {&names.optimizer, "optimizer"},
      {&names.param_groups, "param_groups"},
      {&names.base_lrs, "base_lrs"},
      {&names.last_epoch, "last_epoch"},
      {&names.step_count, "_step_count"},
      {&names.is_initial, "_is_initial"},
      {&names.mode, "mode"},
      {&names.threshold_mode, "threshold_mode"},
      {&names.threshold, "threshold"},
      {&names.patience, "patience"},
      {&names.cooldown, "cooldown"},
      {&names.best, "best"},
      {&names.num_bad_epochs, "num_bad_epochs"},
      {&names.cooldown_counter, "cooldown_counter"},
      {&names.factor, "factor"},
      {&names.eps, "eps"},
      {&names.min_lrs, "min_lrs"},
  };
  for (const auto& row : table) {
    *row.slot = PyUnicode_InternFromString(row.text);
    if (*row.slot == nullptr) return false;
  }
  return true;
}

}  // namespace
}  // namespace schedx

PyMODINIT_FUNC PyInit__C() {
  if (!schedx::intern_names()) return nullptr;
  return PyModule_Create(&schedx::module_def);
}
