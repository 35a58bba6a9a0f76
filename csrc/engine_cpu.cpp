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

#include <vector>

#include "formulas.h"

namespace schedx {
namespace {

PyObject* key_lr;
PyObject* key_momentum;
PyObject* key_betas;
PyObject* key_swa_lr;
PyObject* key_end_step;
PyObject* key_start_lr;
PyObject* key_end_lr;
PyObject* key_start_momentum;
PyObject* key_end_momentum;

// Per-thread scratch, reused across steps so the hot path does not allocate.
struct Scratch {
  std::vector<double> lr;
  std::vector<double> momentum;
  std::vector<char> write;
  std::vector<PyObject*> objects;
  void resize(Py_ssize_t n) {
    lr.resize(n);
    momentum.resize(n);
    write.assign(n, 1);
  }
};
thread_local Scratch scratch;

PyObject* reference_path() { Py_RETURN_NONE; }

// A real number as Python arithmetic sees it: floats (numpy.float64 included) and ints (bool included).
bool read_real(PyObject* v, double* out) {
  if (PyFloat_Check(v)) {
    *out = PyFloat_AS_DOUBLE(v);
    return true;
  }
  if (PyLong_Check(v)) {
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

// param_groups as torch keeps them: a list of plain dicts.
bool is_group_list(PyObject* groups) {
  if (!PyList_CheckExact(groups)) return false;
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
  return PyList_CheckExact(list) && PyList_GET_SIZE(list) == n;
}

bool read_all_lrs(PyObject* groups, Py_ssize_t n, double* lrs) {
  for (Py_ssize_t i = 0; i < n; ++i)
    if (!read_group_real(group_at(groups, i), key_lr, &lrs[i])) return false;
  return true;
}

// The object written as a group's momentum: a float, or `betas` with its first entry replaced,
// built as torch builds it: (momentum, *betas[1:]).
PyObject* new_momentum_object(PyObject* group, double momentum, bool use_beta1) {
  if (!use_beta1) return PyFloat_FromDouble(momentum);
  PyObject* betas = PyDict_GetItemWithError(group, key_betas);
  const Py_ssize_t len = PySequence_Fast_GET_SIZE(betas);
  PyObject* tuple = PyTuple_New(len > 0 ? len : 1);
  if (tuple == nullptr) return nullptr;
  PyObject* first = PyFloat_FromDouble(momentum);
  if (first == nullptr) {
    Py_DECREF(tuple);
    return nullptr;
  }
  PyTuple_SET_ITEM(tuple, 0, first);
  PyObject** items = PySequence_Fast_ITEMS(betas);
  for (Py_ssize_t k = 1; k < len; ++k) {
    Py_INCREF(items[k]);
    PyTuple_SET_ITEM(tuple, k, items[k]);
  }
  return tuple;
}

bool has_betas_sequence(PyObject* group) {
  PyObject* betas = PyDict_GetItemWithError(group, key_betas);
  if (betas == nullptr) {
    PyErr_Clear();
    return false;
  }
  return PyTuple_CheckExact(betas) || PyList_CheckExact(betas);
}

void release(std::vector<PyObject*>& objects) {
  for (PyObject* o : objects) Py_XDECREF(o);
  objects.clear();
}

// Writes the step's results: first every object is created (so a failed allocation writes nothing),
// then momentum (when given) and lr are stored, and the new `_last_lr` list is returned. Groups whose
// write flag is off keep their current lr object, as torch's `_param_groups_val_list` would.
PyObject* commit_step(PyObject* groups, Py_ssize_t n, const double* lrs, const char* write,
                      const double* momenta, bool use_beta1) {
  PyObject* last_lr = PyList_New(n);
  if (last_lr == nullptr) return nullptr;
  std::vector<PyObject*>& new_momenta = scratch.objects;
  release(new_momenta);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* group = group_at(groups, i);
    PyObject* lr;
    if (write[i]) {
      lr = PyFloat_FromDouble(lrs[i]);
    } else {
      lr = PyDict_GetItemWithError(group, key_lr);
      Py_XINCREF(lr);
    }
    if (lr == nullptr) {
      Py_DECREF(last_lr);
      release(new_momenta);
      return nullptr;
    }
    PyList_SET_ITEM(last_lr, i, lr);
    if (momenta != nullptr) {
      PyObject* m = new_momentum_object(group, momenta[i], use_beta1);
      if (m == nullptr) {
        Py_DECREF(last_lr);
        release(new_momenta);
        return nullptr;
      }
      new_momenta.push_back(m);
    }
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* group = group_at(groups, i);
    if (momenta != nullptr) {
      PyDict_SetItem(group, use_beta1 ? key_betas : key_momentum, new_momenta[i]);
    }
    if (write[i]) PyDict_SetItem(group, key_lr, PyList_GET_ITEM(last_lr, i));
  }
  release(new_momenta);
  return last_lr;
}

PyObject* commit_lrs(PyObject* groups, Py_ssize_t n, const double* lrs, const char* write) {
  return commit_step(groups, n, lrs, write, nullptr, false);
}

// Applies one StepPlan to every group.
PyObject* apply_plan(PyObject* groups, PyObject* base_lrs, const StepPlan& plan) {
  if (!plan.ok || !is_group_list(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  const bool reads_base = rule_reads_base_lr(plan.rule);
  if (reads_base && !is_list_of_length(base_lrs, n)) return reference_path();
  scratch.resize(n);
  double* lrs = scratch.lr.data();
  if (!read_all_lrs(groups, n, lrs)) return reference_path();
  if (plan.rule == GroupRule::Keep) {
    scratch.write.assign(n, 0);
    return commit_lrs(groups, n, lrs, scratch.write.data());
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    double base_lr = 0.0;
    if (reads_base && !read_list_real(base_lrs, i, &base_lr)) return reference_path();
    lrs[i] = apply_group_rule(plan, lrs[i], base_lr);
  }
  return commit_lrs(groups, n, lrs, scratch.write.data());
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

// recursive_step(kind, groups, base_lrs, epoch, step_count, is_initial, h0, h1, h2)
PyObject* recursive_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("recursive_step", nargs, 9)) return nullptr;
  Kind kind;
  if (!parse_kind(args[0], &kind)) return nullptr;
  double epoch, h[kMaxSettings];
  int64_t step_count;
  if (!read_real(args[3], &epoch) || !read_int64(args[4], &step_count) ||
      !read_reals(args + 6, kMaxSettings, h))
    return reference_path();
  const int is_initial = PyObject_IsTrue(args[5]);
  if (is_initial < 0) return nullptr;
  return apply_plan(args[1], args[2], plan_recursive_step(kind, epoch, step_count, is_initial, h));
}

// closed_form_step(kind, groups, base_lrs, epoch, h0, h1, h2)
PyObject* closed_form_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("closed_form_step", nargs, 7)) return nullptr;
  Kind kind;
  if (!parse_kind(args[0], &kind)) return nullptr;
  double epoch, h[kMaxSettings];
  if (!read_real(args[3], &epoch) || !read_reals(args + 4, kMaxSettings, h)) return reference_path();
  return apply_plan(args[1], args[2], plan_closed_form_step(kind, epoch, h));
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
  scratch.resize(n);
  double* lrs = scratch.lr.data();
  for (Py_ssize_t i = 0; i < n; ++i) {
    double start, factor;
    const bool ok = from_base ? read_list_real(base_lrs, i, &start)
                              : read_group_real(group_at(groups, i), key_lr, &start);
    if (!ok || !read_list_real(factors, i, &factor)) return reference_path();
    lrs[i] = start * factor;
  }
  return commit_lrs(groups, n, lrs, scratch.write.data());
}

// collect_lrs(groups): torch's `_param_groups_val_list(optimizer, "lr")` for float LRs.
PyObject* collect_lrs(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("collect_lrs", nargs, 1)) return nullptr;
  PyObject* groups = args[0];
  if (!is_group_list(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  scratch.resize(n);
  if (!read_all_lrs(groups, n, scratch.lr.data())) return reference_path();
  scratch.write.assign(n, 0);
  return commit_lrs(groups, n, scratch.lr.data(), scratch.write.data());
}

// The value of CyclicLR's scale function for this step: the user's `scale_fn` (called once, not once
// per group) or the built-in one of `mode`.
bool cyclic_scale(PyObject* scale_fn, CyclicMode mode, double gamma, PyObject* epoch_obj,
                  double epoch, double cycle, bool by_cycle, double* out, bool* failed) {
  *failed = false;
  if (scale_fn == Py_None) return cyclic_builtin_scale(mode, gamma, by_cycle ? cycle : epoch, out);
  PyObject* arg = by_cycle ? PyLong_FromDouble(cycle) : (Py_INCREF(epoch_obj), epoch_obj);
  if (arg == nullptr) {
    *failed = true;
    return false;
  }
  PyObject* value = PyObject_CallOneArg(scale_fn, arg);
  Py_DECREF(arg);
  if (value == nullptr) {
    *failed = true;
    return false;
  }
  const bool ok = read_real(value, out);
  Py_DECREF(value);
  return ok;
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
  bool failed;
  if (!cyclic_scale(args[8], static_cast<CyclicMode>(mode), gamma, args[3], epoch, pos.cycle,
                    by_cycle, &scale, &failed))
    return failed ? nullptr : reference_path();

  scratch.resize(n);
  double* lrs = scratch.lr.data();
  double* momenta = scratch.momentum.data();
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
  return commit_step(groups, n, lrs, scratch.write.data(), cycle_momentum ? momenta : nullptr,
                     use_beta1);
}

// The keys one OneCycleLR phase anneals between, and where it ends.
struct PhaseKeys {
  PyObject* start_lr;
  PyObject* end_lr;
  PyObject* start_momentum;
  PyObject* end_momentum;
};

bool read_phase(PyObject* phase, double* end_step, PhaseKeys* keys) {
  if (!PyDict_Check(phase)) return false;
  PyObject* end = PyDict_GetItemWithError(phase, key_end_step);
  keys->start_lr = PyDict_GetItemWithError(phase, key_start_lr);
  keys->end_lr = PyDict_GetItemWithError(phase, key_end_lr);
  keys->start_momentum = PyDict_GetItemWithError(phase, key_start_momentum);
  keys->end_momentum = PyDict_GetItemWithError(phase, key_end_momentum);
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
  scratch.resize(n);
  double* lrs = scratch.lr.data();
  double* momenta = scratch.momentum.data();
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
  return commit_step(groups, n, lrs, scratch.write.data(), cycle_momentum ? momenta : nullptr,
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
  scratch.resize(n);
  double* lrs = scratch.lr.data();
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* group = group_at(groups, i);
    double lr, target;
    if (!read_group_real(group, key_lr, &lr) || !read_group_real(group, key_swa_lr, &target))
      return reference_path();
    lrs[i] = swa_lr(lr, target, alphas);
  }
  return commit_lrs(groups, n, lrs, scratch.write.data());
}

// Attribute access on the ReduceLROnPlateau object, by interned name.
struct PlateauAttributes {
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
PlateauAttributes plateau_names;

bool read_attr(PyObject* obj, PyObject* name, PyObject** out) {
  *out = PyObject_GetAttr(obj, name);
  if (*out == nullptr) PyErr_Clear();
  return *out != nullptr;
}

bool read_attr_real(PyObject* obj, PyObject* name, double* out) {
  PyObject* v;
  if (!read_attr(obj, name, &v)) return false;
  const bool ok = read_real(v, out);
  Py_DECREF(v);
  return ok;
}

bool read_attr_int64(PyObject* obj, PyObject* name, int64_t* out) {
  PyObject* v;
  if (!read_attr(obj, name, &v)) return false;
  const bool ok = read_int64(v, out);
  Py_DECREF(v);
  return ok;
}

bool attr_equals(PyObject* obj, PyObject* name, const char* text) {
  PyObject* v;
  if (!read_attr(obj, name, &v)) return false;
  const bool equal = PyUnicode_Check(v) && PyUnicode_CompareWithASCIIString(v, text) == 0;
  Py_DECREF(v);
  return equal;
}

// torch's `_is_better` dispatch: anything that is not min/rel, min/abs or max/rel compares as max/abs.
PlateauCriterion plateau_criterion(PyObject* sched) {
  const bool min_mode = attr_equals(sched, plateau_names.mode, "min");
  const bool max_mode = attr_equals(sched, plateau_names.mode, "max");
  const bool rel = attr_equals(sched, plateau_names.threshold_mode, "rel");
  const bool abs = attr_equals(sched, plateau_names.threshold_mode, "abs");
  if (min_mode && rel) return PlateauCriterion::MinRel;
  if (min_mode && abs) return PlateauCriterion::MinAbs;
  if (max_mode && rel) return PlateauCriterion::MaxRel;
  return PlateauCriterion::MaxAbs;
}

bool set_int_attr(PyObject* obj, PyObject* name, int64_t value) {
  PyObject* v = PyLong_FromLongLong(value);
  if (v == nullptr) return false;
  const int rc = PyObject_SetAttr(obj, name, v);
  Py_DECREF(v);
  return rc == 0;
}

bool set_float_attr(PyObject* obj, PyObject* name, double value) {
  PyObject* v = PyFloat_FromDouble(value);
  if (v == nullptr) return false;
  const int rc = PyObject_SetAttr(obj, name, v);
  Py_DECREF(v);
  return rc == 0;
}

// torch's `_reduce_lr` for float LRs: new lrs and which of them change. False when torch's own code must
// run it (min_lrs no longer matches the groups, or holds something other than floats and ints).
bool reduce_plateau_lrs(PyObject* sched, Py_ssize_t n, double factor, double eps, double* lrs,
                        char* write) {
  PyObject* min_lrs;
  if (!read_attr(sched, plateau_names.min_lrs, &min_lrs)) return false;
  bool ok = is_list_of_length(min_lrs, n);
  for (Py_ssize_t i = 0; ok && i < n; ++i) {
    double min_lr;
    ok = read_list_real(min_lrs, i, &min_lr);
    if (ok) {
      bool changes;
      lrs[i] = plateau_reduced_lr(lrs[i], factor, min_lr, eps, &changes);
      write[i] = changes;
    }
  }
  Py_DECREF(min_lrs);
  return ok;
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
      !read_attr_real(sched, plateau_names.best, &state.best) ||
      !read_attr_int64(sched, plateau_names.num_bad_epochs, &state.num_bad_epochs) ||
      !read_attr_int64(sched, plateau_names.cooldown_counter, &state.cooldown_counter) ||
      !read_attr_int64(sched, plateau_names.cooldown, &settings.cooldown) ||
      !read_attr_real(sched, plateau_names.patience, &settings.patience) ||
      !read_attr_real(sched, plateau_names.threshold, &settings.threshold) ||
      !read_attr_real(sched, plateau_names.factor, &factor) ||
      !read_attr_real(sched, plateau_names.eps, &eps))
    return reference_path();
  settings.criterion = plateau_criterion(sched);

  const Py_ssize_t n = PyList_GET_SIZE(groups);
  scratch.resize(n);
  double* lrs = scratch.lr.data();
  if (!read_all_lrs(groups, n, lrs)) return reference_path();

  scratch.write.assign(n, 0);
  if (plateau_observe(&state, settings, current)) {
    if (!reduce_plateau_lrs(sched, n, factor, eps, lrs, scratch.write.data()))
      return reference_path();
    plateau_after_reduction(&state, settings);
  }
  PyObject* last_lr = commit_lrs(groups, n, lrs, scratch.write.data());
  if (last_lr == nullptr) return nullptr;
  if (!set_float_attr(sched, plateau_names.best, state.best) ||
      !set_int_attr(sched, plateau_names.num_bad_epochs, state.num_bad_epochs) ||
      !set_int_attr(sched, plateau_names.cooldown_counter, state.cooldown_counter)) {
    Py_DECREF(last_lr);
    return nullptr;
  }
  return last_lr;
}

PyObject* kinds(PyObject*, PyObject*) {
  PyObject* d = PyDict_New();
  if (d == nullptr) return nullptr;
  const struct {
    const char* name;
    Kind kind;
  } table[] = {
      {"StepLR", Kind::StepLR},
      {"MultiStepLR", Kind::MultiStepLR},
      {"ConstantLR", Kind::ConstantLR},
      {"LinearLR", Kind::LinearLR},
      {"ExponentialLR", Kind::ExponentialLR},
      {"PolynomialLR", Kind::PolynomialLR},
      {"CosineAnnealingLR", Kind::CosineAnnealingLR},
      {"CosineAnnealingWarmRestarts", Kind::CosineAnnealingWarmRestarts},
  };
  for (const auto& row : table) {
    PyObject* v = PyLong_FromLong(static_cast<long>(row.kind));
    if (v == nullptr || PyDict_SetItemString(d, row.name, v) < 0) {
      Py_XDECREF(v);
      Py_DECREF(d);
      return nullptr;
    }
    Py_DECREF(v);
  }
  return d;
}

// METH_FASTCALL functions are stored in PyMethodDef as a PyCFunction.
#define SCHEDX_FASTCALL(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(f))

PyMethodDef methods[] = {
    {"recursive_step", SCHEDX_FASTCALL(recursive_step),
     METH_FASTCALL, "The chainable get_lr() of a StepPlan scheduler, applied to every group."},
    {"closed_form_step",
     SCHEDX_FASTCALL(closed_form_step), METH_FASTCALL,
     "The _get_closed_form_lr() of a StepPlan scheduler, applied to every group."},
    {"scale_by_factors",
     SCHEDX_FASTCALL(scale_by_factors), METH_FASTCALL,
     "LambdaLR / MultiplicativeLR arithmetic with the factors the lambdas returned."},
    {"cyclic_step", SCHEDX_FASTCALL(cyclic_step),
     METH_FASTCALL, "CyclicLR's get_lr(), momentum included."},
    {"one_cycle_step",
     SCHEDX_FASTCALL(one_cycle_step), METH_FASTCALL,
     "OneCycleLR's get_lr(), momentum included."},
    {"swa_step", SCHEDX_FASTCALL(swa_step),
     METH_FASTCALL, "SWALR's get_lr()."},
    {"plateau_step", SCHEDX_FASTCALL(plateau_step),
     METH_FASTCALL, "ReduceLROnPlateau's bookkeeping and reduction."},
    {"collect_lrs", SCHEDX_FASTCALL(collect_lrs),
     METH_FASTCALL, "Every group's current lr, as torch's _param_groups_val_list."},
    {"kinds", kinds, METH_NOARGS, "The Kind enum of csrc/kinds.h, by name."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "schedx._C",
                          "schedx's fused CPU engine (see csrc/engine_cpu.cpp).", -1, methods};

bool intern_all() {
  struct {
    PyObject** slot;
    const char* text;
  } names[] = {
      {&key_lr, "lr"},
      {&key_momentum, "momentum"},
      {&key_betas, "betas"},
      {&key_swa_lr, "swa_lr"},
      {&key_end_step, "end_step"},
      {&key_start_lr, "start_lr"},
      {&key_end_lr, "end_lr"},
      {&key_start_momentum, "start_momentum"},
      {&key_end_momentum, "end_momentum"},
      {&plateau_names.mode, "mode"},
      {&plateau_names.threshold_mode, "threshold_mode"},
      {&plateau_names.threshold, "threshold"},
      {&plateau_names.patience, "patience"},
      {&plateau_names.cooldown, "cooldown"},
      {&plateau_names.best, "best"},
      {&plateau_names.num_bad_epochs, "num_bad_epochs"},
      {&plateau_names.cooldown_counter, "cooldown_counter"},
      {&plateau_names.factor, "factor"},
      {&plateau_names.eps, "eps"},
      {&plateau_names.min_lrs, "min_lrs"},
  };
  for (const auto& n : names) {
    *n.slot = PyUnicode_InternFromString(n.text);
    if (*n.slot == nullptr) return false;
  }
  return true;
}

}  // namespace
}  // namespace schedx

PyMODINIT_FUNC PyInit__C() {
  if (!schedx::intern_all()) return nullptr;
  return PyModule_Create(&schedx::module_def);
}
