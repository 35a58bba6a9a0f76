// The Cyclic family: CyclicLR with one of torch's built-in scale functions (a custom one is torch's
// code to call), momentum included.
#include "py/family.h"

namespace schedx {
namespace {

// What CyclicLR's get_lr() reads besides the groups (objects borrowed).
struct CyclicInputs {
  PyObject* base_lrs;
  PyObject* max_lrs;
  PyObject* base_momenta;  // with max_momenta, null when the momentum does not cycle
  PyObject* max_momenta;
  double epoch, total_size, step_ratio, gamma;
  CyclicMode mode;
  bool by_cycle, use_beta1;
};

// CyclicLR's get_lr() with a built-in scale function (a custom one is torch's code to call), momentum
// included, written to the groups; None for torch's code.
PyObject* cyclic_pass(PyObject* groups, const CyclicInputs& in, const LastLrOwner& refill = {}) {
  const CyclePosition pos = cyclic_position(in.epoch, in.total_size, in.step_ratio);
  if (!pos.ok) return reference_path();
  double scale;
  if (!cyclic_builtin_scale(in.mode, in.gamma, in.by_cycle ? pos.cycle : in.epoch, &scale))
    return reference_path();
  if (!PyList_CheckExact(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  const bool cycle_momentum = in.base_momenta != nullptr;
  if (!is_list_of_length(in.base_lrs, n) || !is_list_of_length(in.max_lrs, n) ||
      (cycle_momentum &&
       (!is_list_of_length(in.base_momenta, n) || !is_list_of_length(in.max_momenta, n))))
    return reference_path();

  return write_groups(
      groups, momentum_key_of(cycle_momentum, in.use_beta1),
      [&](Py_ssize_t i, PyObject* group, double, GroupResult* r) {
        double base_lr, max_lr;
        if (!read_list_real(in.base_lrs, i, &base_lr) || !read_list_real(in.max_lrs, i, &max_lr))
          return false;
        r->lr = cyclic_lr(base_lr, max_lr, pos.scale_factor, scale);
        if (!cycle_momentum) return true;
        double base_m, max_m;
        if (!read_list_real(in.base_momenta, i, &base_m) ||
            !read_list_real(in.max_momenta, i, &max_m) || (in.use_beta1 && !has_betas_sequence(group)))
          return false;
        r->momentum = cyclic_momentum(base_m, max_m, pos.scale_factor, scale);
        return true;
      },
      refill);
}

// CyclicLR's registered `extra`: torch's triangular, triangular2 and exp_range functions and the
// functools.partial type exp_range is bound with (schedx/lr_scheduler.py's _CYCLIC_SCALE_FUNCTIONS).
bool is_scale_functions(PyObject* functions) {
  return PyTuple_CheckExact(functions) && PyTuple_GET_SIZE(functions) == 4 &&
         PyType_Check(PyTuple_GET_ITEM(functions, 3));
}

// CyclicLR's `_scale_fn_ref` as one of torch's built-in scale functions: its mode and exp_range's
// gamma; false for anything else (a custom function; an int gamma, whose `gamma ** x` is an exact int
// that torch's code computes). `functions`: torch's triangular, triangular2 and exp_range functions
// and the functools.partial type exp_range is bound with (schedx/lr_scheduler.py's _CYCLIC_SCALE_FUNCTIONS).
bool builtin_cyclic_scale(PyObject* ref, PyObject* functions, CyclicMode* mode, double* gamma) {
  *gamma = 0.0;
  if (ref == PyTuple_GET_ITEM(functions, 0)) {
    *mode = CyclicMode::Triangular;
    return true;
  }
  if (ref == PyTuple_GET_ITEM(functions, 1)) {
    *mode = CyclicMode::Triangular2;
    return true;
  }
  const int is_partial = PyObject_IsInstance(ref, PyTuple_GET_ITEM(functions, 3));
  Ref func(is_partial == 1 ? PyObject_GetAttr(ref, names.func) : nullptr);
  Ref args(func ? PyObject_GetAttr(ref, names.args) : nullptr);
  PyErr_Clear();
  if (func.get() != PyTuple_GET_ITEM(functions, 2) || !args || !PyTuple_CheckExact(args.get()) ||
      PyTuple_GET_SIZE(args.get()) != 1 || !PyFloat_CheckExact(PyTuple_GET_ITEM(args.get(), 0)))
    return false;
  *gamma = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(args.get(), 0));
  *mode = CyclicMode::ExpRange;
  return true;
}

// cyclic_builtin_scale(ref, functions): builtin_cyclic_scale for the Python layer, (mode, gamma), or
// (-1, 0.0) for a scale function torch's code must call.
PyObject* cyclic_builtin_scale(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("cyclic_builtin_scale", nargs, 2)) return nullptr;
  if (!is_scale_functions(args[1])) {
    PyErr_SetString(PyExc_TypeError, "schedx: cyclic_builtin_scale(ref, (triangular, triangular2, exp_range, partial))");
    return nullptr;
  }
  CyclicMode mode;
  double gamma;
  if (!builtin_cyclic_scale(args[0], args[1], &mode, &gamma)) return Py_BuildValue("(id)", -1, 0.0);
  return Py_BuildValue("(id)", static_cast<int>(mode), gamma);
}

// CyclicLR's inputs from its dict at `epoch`, for a built-in scale function (schedx/lr_scheduler.py's
// _builtin_scale: `functions` are torch's (triangular, triangular2, exp_range) and the
// functools.partial type exp_range is bound with); false for a custom scale_fn, or anything torch's
// code must judge.
bool read_cyclic_inputs(Held& held, PyObject* dict, PyObject* functions, int64_t epoch,
                        CyclicInputs* in) {
  in->epoch = static_cast<double>(epoch);
  PyObject *custom, *ref, *scale_mode, *cycle_momentum;
  if (!dict_items(held, dict, {{names.scale_fn_custom, &custom},
                         {names.scale_fn_ref, &ref},
                         {names.scale_mode, &scale_mode},
                         {names.cycle_momentum, &cycle_momentum},
                         {names.base_lrs, &in->base_lrs},
                         {names.max_lrs, &in->max_lrs}}) ||
      custom != Py_None || !PyUnicode_CheckExact(scale_mode) ||
      !read_dict_real(dict, names.total_size, &in->total_size) ||
      !read_dict_real(dict, names.step_ratio, &in->step_ratio))
    return false;
  if (!builtin_cyclic_scale(ref, functions, &in->mode, &in->gamma)) return false;
  const int cycling = PyObject_IsTrue(cycle_momentum);
  if (cycling < 0) return false;
  in->base_momenta = in->max_momenta = nullptr;
  PyObject* use_beta1 = Py_False;
  if (cycling && !dict_items(held, dict, {{names.base_momentums, &in->base_momenta},
                                    {names.max_momentums, &in->max_momenta},
                                    {names.use_beta1, &use_beta1}}))
    return false;
  const int beta1 = PyObject_IsTrue(use_beta1);
  if (beta1 < 0) return false;
  in->use_beta1 = beta1;
  in->by_cycle = is_name(scale_mode, names.cycle);
  return true;
}

// cyclic_get_lr(scheduler, functions): CyclicLR's _fused_lr(); `functions` as read_cyclic_inputs
// takes them.
PyObject* cyclic_get_lr(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("cyclic_get_lr", nargs, 2)) return nullptr;
  if (!is_scale_functions(args[1])) return reference_path();
  CyclicInputs in;
  return get_lr_from_dict(
      args[0],
      [&](Held& held, PyObject* dict, int64_t epoch, int64_t) {
        return read_cyclic_inputs(held, dict, args[1], epoch, &in);
      },
      [&](PyObject* groups) { return cyclic_pass(groups, in); });
}

PyObject* plain_cyclic_step(const PlainClass& cls, PyObject* scheduler, PyObject* const*) {
  CyclicInputs in;
  return counted_step(
      scheduler,
      [&](Held& held, PyObject* dict, int64_t epoch, int64_t) {
        return read_cyclic_inputs(held, dict, cls.extra, epoch, &in);
      },
      [&](PyObject* groups, const LastLrOwner& refill) { return cyclic_pass(groups, in, refill); });
}

bool accepts_cyclic(const PlainClass& cls) { return is_scale_functions(cls.extra); }

PyMethodDef cyclic_methods[] = {
    {"cyclic_get_lr", SCHEDX_FASTCALL(cyclic_get_lr), METH_FASTCALL,
     "CyclicLR's get_lr() at its current last_epoch, momentum included, read from its dict."},
    {"cyclic_builtin_scale", SCHEDX_FASTCALL(cyclic_builtin_scale), METH_FASTCALL,
     "CyclicLR's built-in scale function as (mode, gamma), or (-1, 0.0)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

const EngineFamily kCyclicFamily{0, accepts_cyclic, plain_cyclic_step, cyclic_methods};

}  // namespace schedx
