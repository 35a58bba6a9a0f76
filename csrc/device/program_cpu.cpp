// Tensor-LR programs (program.h) on the Python side of the extension: built from the arrays the Python
// layer allocated (schedx/_tensor_mode.py), held in a capsule, and run here for CPU tensors. The CUDA
// module (engine_cuda.cu) takes the same capsule and runs it as one kernel launch.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <initializer_list>
#include <new>
#include <utility>

#include "device/program.h"
#include "device/program_capsule.h"
#include "py/api.h"

namespace schedx {
namespace {

bool read_long_long(PyObject* v, const char* what, long long* out) {
  const long long value = PyLong_AsLongLong(v);
  if (value == -1 && PyErr_Occurred()) {
    PyErr_Format(PyExc_TypeError, "schedx: %s must be an int", what);
    return false;
  }
  *out = value;
  return true;
}

template <typename T>
bool read_pointer(PyObject* v, const char* what, bool required, T* out) {
  long long address = 0;
  if (!read_long_long(v, what, &address)) return false;
  if (required && address == 0) {
    PyErr_Format(PyExc_ValueError, "schedx: %s is a null pointer", what);
    return false;
  }
  *out = reinterpret_cast<T>(static_cast<intptr_t>(address));
  return true;
}

bool read_int_in(PyObject* v, const char* what, long long low, long long high, int32_t* out) {
  long long value = 0;
  if (!read_long_long(v, what, &value)) return false;
  if (value < low || value > high) {
    PyErr_Format(PyExc_ValueError, "schedx: %s = %lld is out of range [%lld, %lld]", what, value,
                 low, high);
    return false;
  }
  *out = static_cast<int32_t>(value);
  return true;
}

// A tuple of at most `capacity` floats into `out`, the rest zero; returns the count or -1.
Py_ssize_t read_float_tuple(PyObject* v, const char* what, double* out, Py_ssize_t capacity) {
  if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) > capacity) {
    PyErr_Format(PyExc_ValueError, "schedx: %s must be a tuple of at most %zd floats", what,
                 capacity);
    return -1;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(v);
  for (Py_ssize_t k = 0; k < capacity; ++k) out[k] = 0.0;
  for (Py_ssize_t k = 0; k < n; ++k) {
    out[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(v, k));
    if (out[k] == -1.0 && PyErr_Occurred()) return -1;
  }
  return n;
}

// A Schedule stage's compiled schedules: a tuple of (code, n_instructions, consts, n_consts), where
// code and consts are addresses of int32 and float64 arrays on the program's device.
bool read_schedules(PyObject* v, ScheduleParams* st) {
  if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) > kMaxSchedules) {
    PyErr_Format(PyExc_ValueError, "schedx: a stage has at most %d schedules", kMaxSchedules);
    return false;
  }
  st->n_schedules = static_cast<int32_t>(PyTuple_GET_SIZE(v));
  for (int32_t k = 0; k < st->n_schedules; ++k) {
    PyObject* item = PyTuple_GET_ITEM(v, k);
    ExprCode& code = st->schedules[k];
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
      PyErr_SetString(PyExc_ValueError, "schedx: a schedule is (code, n_instructions, consts, n_consts)");
      return false;
    }
    if (!read_pointer(PyTuple_GET_ITEM(item, 0), "schedule code", true, &code.code) ||
        !read_int_in(PyTuple_GET_ITEM(item, 1), "n_instructions", 1, kMaxExprInstructions,
                     &code.n_instructions) ||
        !read_pointer(PyTuple_GET_ITEM(item, 2), "schedule consts", true, &code.consts) ||
        !read_int_in(PyTuple_GET_ITEM(item, 3), "n_consts", 0, 1 << 20, &code.n_consts))
      return false;
  }
  return true;
}

// A stage's family (a family that has a program) and its params tuple, unpacked into its family's
// struct (program.h's unpack_params); false with ValueError.
bool read_family_params(PyObject* family_obj, PyObject* params_obj, Stage* st) {
  int32_t family = 0;
  double params[kMaxStageParams];
  if (!read_int_in(family_obj, "family", 0, kNumFamilies - 1, &family) ||
      read_float_tuple(params_obj, "params", params, kMaxStageParams) < 0)
    return false;
  st->family = static_cast<Family>(family);
  if (!has_program(st->family)) {
    PyErr_Format(PyExc_ValueError, "schedx: family %d has no program", static_cast<int>(family));
    return false;
  }
  if (!unpack_params(params, st)) {
    PyErr_SetString(PyExc_ValueError, "schedx: a stage's params are out of range");
    return false;
  }
  return true;
}

// (family, kind, flags, params, milestones, counters, state, values, last_lr, schedules): `params` as
// program.h's unpack_params takes them; milestones (MultiStepLR's) and schedules only for the families
// that have them.
bool read_stage(PyObject* spec, Stage* st) {
  if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 10) {
    PyErr_SetString(PyExc_ValueError, "schedx: a stage is a tuple of 10 items");
    return false;
  }
  PyObject* const* item = &PyTuple_GET_ITEM(spec, 0);
  int32_t kind = 0;
  double milestones[kMaxMilestones];
  if (!read_family_params(item[0], item[3], st) ||
      !read_int_in(item[1], "kind", 0, kNumKinds - 1, &kind) ||
      !read_int_in(item[2], "flags", 0, 63, &st->flags))
    return false;
  const Py_ssize_t n_milestones = read_float_tuple(item[4], "milestones", milestones, kMaxMilestones);
  if (n_milestones < 0) return false;
  st->kind = static_cast<Kind>(kind);
  if (st->family == Family::Plan) {
    st->plan.n_milestones = static_cast<int32_t>(n_milestones);
    for (Py_ssize_t k = 0; k < n_milestones; ++k) st->plan.milestones[k] = milestones[k];
  }
  return read_pointer(item[5], "stage counters", true, &st->counters) &&
         read_pointer(item[6], "stage state", true, &st->state) &&
         read_pointer(item[7], "stage values", true, &st->values) &&
         read_pointer(item[8], "stage last_lr", true, &st->last_lr) &&
         (st->family != Family::Schedule || read_schedules(item[9], &st->schedule));
}

bool read_stages(PyObject* specs, Program* prog) {
  if (!PyTuple_Check(specs) || PyTuple_GET_SIZE(specs) < 1 ||
      PyTuple_GET_SIZE(specs) > kMaxStages) {
    PyErr_Format(PyExc_ValueError, "schedx: a program has 1 to %d stages", kMaxStages);
    return false;
  }
  prog->n_stages = static_cast<int32_t>(PyTuple_GET_SIZE(specs));
  for (int32_t k = 0; k < prog->n_stages; ++k)
    if (!read_stage(PyTuple_GET_ITEM(specs, k), &prog->stages[k])) return false;
  return true;
}

bool read_seq_milestones(PyObject* v, Program* prog) {
  if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) >= kMaxStages) {
    PyErr_SetString(PyExc_ValueError, "schedx: too many SequentialLR milestones");
    return false;
  }
  prog->n_seq_milestones = static_cast<int32_t>(PyTuple_GET_SIZE(v));
  for (int32_t k = 0; k < prog->n_seq_milestones; ++k) {
    long long m = 0;
    if (!read_long_long(PyTuple_GET_ITEM(v, k), "milestone", &m)) return false;
    prog->seq_milestones[k] = m;
  }
  return true;
}

// One step: decide it, apply it to every group, commit the counters.
void run_step(const Program& prog) {
  const ProgramStep s = decide_program(prog);
  if (s.ok)
    for (int64_t i = 0; i < prog.n_groups; ++i) step_group(prog, s, i);
  commit_step(prog, s);
}

void free_program(PyObject* capsule) {
  delete static_cast<Program*>(PyCapsule_GetPointer(capsule, kProgramCapsuleName));
}

}  // namespace

// make_program(n_groups, composition, seq_milestones, counters, lr, lr_is_f64, shadow, momentum,
//              momentum_is_f64, stages, status_host) -> capsule. Pointers are the data_ptr() of tensors
// the caller keeps alive for as long as the capsule.
PyObject* make_program(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("make_program", nargs, 11)) return nullptr;
  Program* prog = new (std::nothrow) Program{};
  if (prog == nullptr) return PyErr_NoMemory();
  long long n_groups = 0;
  int32_t composition = 0;
  const bool ok =
      read_long_long(args[0], "n_groups", &n_groups) &&
      read_int_in(args[1], "composition", 0, 2, &composition) &&
      read_seq_milestones(args[2], prog) &&
      read_pointer(args[3], "counters", true, &prog->counters) &&
      read_pointer(args[4], "lr", true, &prog->lr) &&
      read_pointer(args[5], "lr_is_f64", true, &prog->lr_is_f64) &&
      read_pointer(args[6], "shadow", true, &prog->shadow) &&
      read_pointer(args[7], "momentum", false, &prog->momentum) &&
      read_pointer(args[8], "momentum_is_f64", false, &prog->momentum_is_f64) &&
      read_stages(args[9], prog) &&
      read_pointer(args[10], "status_host", false, &prog->status_host);
  if (ok && n_groups < 1) PyErr_SetString(PyExc_ValueError, "schedx: a program needs groups");
  if (!ok || n_groups < 1) {
    delete prog;
    return nullptr;
  }
  prog->n_groups = n_groups;
  prog->composition = static_cast<Composition>(composition);
  PyObject* capsule = PyCapsule_New(prog, kProgramCapsuleName, free_program);
  if (capsule == nullptr) delete prog;
  return capsule;
}

// run_program(capsule, mode, is_initial, metric, metric_is_f64) -> status: one step of a program over
// CPU tensors; program.h's status after it (0 when the step was computed; else it wrote nothing).
PyObject* run_program(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("run_program", nargs, 5)) return nullptr;
  Program* prog = program_from_capsule(args[0]);
  if (prog == nullptr || !set_program_mode(prog, args[1], args[2]) ||
      !set_program_metric(prog, args[3], args[4]))
    return nullptr;
  run_step(*prog);
  return PyLong_FromLongLong(prog->counters[counter::kStatus]);
}

// record_program(capsule, steps, lrs, momenta): `steps` plain steps of a program over CPU tensors,
// keeping group 0's LR (and momentum, when `momenta` is not 0) after each in the float64 arrays at
// `lrs` / `momenta`, which hold `steps` values. A schedule's curve in one call (schedx/plot.py).
PyObject* record_program(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("record_program", nargs, 4)) return nullptr;
  Program* prog = program_from_capsule(args[0]);
  long long steps = 0;
  double* lrs = nullptr;
  double* momenta = nullptr;
  if (prog == nullptr || !read_long_long(args[1], "steps", &steps) ||
      !read_pointer(args[2], "lrs", true, &lrs) || !read_pointer(args[3], "momenta", false, &momenta))
    return nullptr;
  if (momenta != nullptr && prog->momentum == nullptr) {
    PyErr_SetString(PyExc_ValueError, "schedx: this program writes no momentum");
    return nullptr;
  }
  prog->mode = RunMode::Advance;
  prog->is_initial = 0;
  for (int32_t k = 0; k < prog->n_stages; ++k) {
    if (prog->stages[k].family == Family::Plateau) {
      PyErr_SetString(PyExc_ValueError, "schedx: ReduceLROnPlateau has no curve without metrics");
      return nullptr;
    }
  }
  for (long long t = 0; t < steps; ++t) {
    run_step(*prog);
    lrs[t] = prog->shadow[0];
    if (momenta != nullptr) momenta[t] = load_scalar(prog->momentum[0], prog->momentum_is_f64[0] != 0);
  }
  Py_RETURN_NONE;
}

namespace {

// The device's cos (dd_math.h), run on the host so tests can hold it against the C library's.
PyObject* device_cos(PyObject*, PyObject* arg) {
  const double x = PyFloat_AsDouble(arg);
  if (x == -1.0 && PyErr_Occurred()) return nullptr;
  return PyFloat_FromDouble(dd::cos_correctly_rounded(x));
}

// The device's pow (dd_math.h), likewise.
PyObject* device_pow(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("device_pow", nargs, 2)) return nullptr;
  const double x = PyFloat_AsDouble(args[0]);
  const double y = PyFloat_AsDouble(args[1]);
  if (PyErr_Occurred()) return nullptr;
  return PyFloat_FromDouble(dd::pow_correctly_rounded(x, y));
}

}  // namespace

// stage_params(family, params): a stage's params tuple as unpack_params reads it, by field name, so
// that tests can hold the Python layer's tuples against the fields the program reads.
PyObject* stage_params(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("stage_params", nargs, 2)) return nullptr;
  Stage st{};
  if (!read_family_params(args[0], args[1], &st)) return nullptr;
  auto ints = [](const int32_t* v) { return Py_BuildValue("(iii)", v[0], v[1], v[2]); };
  switch (st.family) {
    case Family::Plan:
      return Py_BuildValue("{s:(ddd),s:d}", "settings", st.plan.settings[0], st.plan.settings[1],
                           st.plan.settings[2], "t_mult", st.plan.t_mult);
    case Family::OneCycle: {
      const OneCycleParams& oc = st.one_cycle;
      return Py_BuildValue("{s:d,s:i,s:(ddd),s:N,s:N,s:N,s:N}", "total_steps", oc.total_steps,
                           "n_phases", oc.n_phases, "end_step", oc.end_step[0], oc.end_step[1],
                           oc.end_step[2], "start_lr", ints(oc.start_lr), "end_lr", ints(oc.end_lr),
                           "start_momentum", ints(oc.start_momentum), "end_momentum",
                           ints(oc.end_momentum));
    }
    case Family::Cyclic:
      return Py_BuildValue("{s:d,s:d,s:i,s:d}", "total_size", st.cyclic.total_size, "step_ratio",
                           st.cyclic.step_ratio, "mode", static_cast<int>(st.cyclic.mode), "gamma",
                           st.cyclic.gamma);
    case Family::Plateau:
      return Py_BuildValue("{s:i,s:d,s:d,s:L,s:d,s:d}", "criterion",
                           static_cast<int>(st.plateau.criterion), "threshold", st.plateau.threshold,
                           "patience", st.plateau.patience, "cooldown",
                           static_cast<long long>(st.plateau.cooldown), "factor", st.plateau.factor,
                           "eps", st.plateau.eps);
    default: return PyDict_New();
  }
}

// The tensor-mode functions the module (py/module.cpp) gives the Python layer.
PyMethodDef program_methods[] = {
    {"make_program", SCHEDX_FASTCALL(make_program), METH_FASTCALL,
     "A tensor-LR program over the given arrays, as a capsule."},
    {"run_program", SCHEDX_FASTCALL(run_program), METH_FASTCALL,
     "One step of a tensor-LR program over CPU tensors."},
    {"record_program", SCHEDX_FASTCALL(record_program), METH_FASTCALL,
     "Many steps of a tensor-LR program over CPU tensors, recording group 0's values."},
    {"stage_params", SCHEDX_FASTCALL(stage_params), METH_FASTCALL,
     "A stage's params tuple as the program reads it, by field name."},
    {"device_cos", device_cos, METH_O, "The CUDA kernel's cos (rules/dd_math.h), on the host."},
    {"device_pow", SCHEDX_FASTCALL(device_pow), METH_FASTCALL,
     "The CUDA kernel's pow (rules/dd_math.h), on the host."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace schedx
