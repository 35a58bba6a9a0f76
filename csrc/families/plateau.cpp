// The Plateau family: ReduceLROnPlateau, its bookkeeping (best, bad epochs, cooldown) and any
// reduction, with a float or int metric.
#include <cstring>

#include "py/family.h"

namespace schedx {
namespace {

// torch's `_is_better` dispatch as formulas.h's PlateauCriterion: anything but min/rel, min/abs and
// max/rel compares as max/abs.
PlateauCriterion plateau_criterion_of(PyObject* mode, PyObject* threshold_mode) {
  if (!PyUnicode_CheckExact(mode) || !PyUnicode_CheckExact(threshold_mode))
    return PlateauCriterion::MaxAbs;
  if (is_name(mode, names.min) && is_name(threshold_mode, names.rel)) return PlateauCriterion::MinRel;
  if (is_name(mode, names.min) && is_name(threshold_mode, names.abs)) return PlateauCriterion::MinAbs;
  if (is_name(mode, names.max) && is_name(threshold_mode, names.rel)) return PlateauCriterion::MaxRel;
  return PlateauCriterion::MaxAbs;
}

// plateau_criterion(mode, threshold_mode): the above, for the Python layer's tensor-mode stage.
PyObject* plateau_criterion(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("plateau_criterion", nargs, 2)) return nullptr;
  return PyLong_FromLong(static_cast<long>(plateau_criterion_of(args[0], args[1])));
}

// Whether torch's "abs" comparison bound `best - threshold` (or `best + threshold`) is an exact int:
// an int best (set by the user or a state dict) and an int threshold. Python compares the metric with
// it exactly; in a double the bound rounds past 2**53, so torch's code judges the step.
bool exact_int_bound(PyObject* best, PyObject* threshold) {
  return PyLong_CheckExact(best) && PyLong_CheckExact(threshold);
}

// What ReduceLROnPlateau's step reads besides the groups, as plateau_pass takes it.
struct PlateauInputs {
  double current, factor, eps;
  PlateauState state;
  PlateauSettings settings;
  PyObject* min_lrs;  // borrowed
};

// ReduceLROnPlateau.step after `last_epoch` is set: the bookkeeping (`in.state` updated) and, when
// the patience runs out, the reduction. Returns the new `_last_lr`, or None with nothing written (min_lrs
// no longer matching the groups, an LR that is not a float or an int).
PyObject* plateau_pass(PyObject* groups, PlateauInputs& in, const LastLrOwner& refill = {}) {
  if (!PyList_CheckExact(groups)) return reference_path();
  if (!plateau_observe(&in.state, in.settings, in.current)) return current_lrs(groups, refill);
  if (!is_list_of_length(in.min_lrs, PyList_GET_SIZE(groups))) return reference_path();
  PyObject* result = write_groups(groups, MomentumKey::None,
                                  [&](Py_ssize_t i, PyObject*, double lr, GroupResult* r) {
                                    double min_lr;
                                    PyObject* min_obj = PyList_GET_ITEM(in.min_lrs, i);
                                    if (!read_real(min_obj, &min_lr)) return false;
                                    // torch's max(lr * factor, min_lr) gives an int min_lr that
                                    // wins as that int.
                                    if (PyLong_CheckExact(min_obj) && min_lr > lr * in.factor)
                                      return false;
                                    r->lr = plateau_reduced_lr(lr, in.factor, min_lr, in.eps, &r->write);
                                    return true;
                                  },
                                  refill);
  plateau_after_reduction(&in.state, in.settings);
  return result;
}

// ReduceLROnPlateau's inputs from its dict and the metric, as its plain step and its Python step
// read them: false for anything torch's code must judge.
bool read_plateau_inputs(Held& held, PyObject* d, PyObject* metrics, PlateauInputs* in) {
  PyObject *mode, *threshold_mode, *best, *threshold;
  if (!dict_items(held, d, {{names.mode, &mode}, {names.threshold_mode, &threshold_mode},
                            {names.min_lrs, &in->min_lrs}, {names.best, &best},
                            {names.threshold, &threshold}}) ||
      !read_real(metrics, &in->current) || !read_real(best, &in->state.best) ||
      exact_int_bound(best, threshold) ||
      !read_dict_int64(d, names.num_bad_epochs, &in->state.num_bad_epochs) ||
      !read_dict_int64(d, names.cooldown_counter, &in->state.cooldown_counter) ||
      !read_dict_int64(d, names.cooldown, &in->settings.cooldown) ||
      !read_real(threshold, &in->settings.threshold) ||
      !read_dict_real(d, names.patience, &in->settings.patience) ||
      !read_dict_real(d, names.factor, &in->factor) || !read_dict_real(d, names.eps, &in->eps))
    return false;
  in->settings.criterion = plateau_criterion_of(mode, threshold_mode);
  return true;
}

// Whether the step's bookkeeping replaced `best` (torch replaces it only with a better metric).
bool improved(double old_best, double new_best) {
  return std::memcmp(&old_best, &new_best, sizeof(double)) != 0;
}

// A registered ReduceLROnPlateau's `step(metrics)` with a float or int metric and plain attributes:
// torch's `last_epoch + 1`, the bookkeeping and any reduction, read from and written to its dict.
// True; False with nothing changed.
PyObject* plain_plateau_step(const PlainClass&, PyObject* scheduler, PyObject* const* args) {
  PyObject* metrics = args[0];
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return nullptr;
  PyObject* d = dict.get();
  PlateauInputs in;
  int64_t last_epoch;
  Held held;
  if (!read_plateau_inputs(held, d, metrics, &in) || !read_dict_int64(d, names.last_epoch, &last_epoch) ||
      !exact_counters(last_epoch, 0))
    return declined();
  const double old_best = in.state.best;
  PyObject* optimizer = optimizer_of(held, d);
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return declined();
  Ref last_lr(plateau_pass(groups.get(), in, LastLrOwner{d}));
  if (!last_lr) return nullptr;
  if (last_lr.get() == Py_None) Py_RETURN_FALSE;
  if (!set_item(d, names.last_epoch, PyLong_FromLongLong(last_epoch + 1)) ||
      (improved(old_best, in.state.best) && !set_item(d, names.best, PyFloat_FromDouble(in.state.best))) ||
      !set_item(d, names.num_bad_epochs, PyLong_FromLongLong(in.state.num_bad_epochs)) ||
      !set_item(d, names.cooldown_counter, PyLong_FromLongLong(in.state.cooldown_counter)) ||
      !store_last_lr(d, last_lr.get()))
    return nullptr;
  Py_RETURN_TRUE;
}

// plateau_get_lr(scheduler, metric): ReduceLROnPlateau's bookkeeping and any reduction once its Python
// step has set `last_epoch`, its inputs read as the plain step reads them. (last_lr, best,
// num_bad_epochs, cooldown_counter) for the caller to store, `best` None where torch keeps its object
// (no better metric); None for torch's code, with nothing written.
PyObject* plateau_get_lr(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("plateau_get_lr", nargs, 2)) return nullptr;
  Ref dict(PyObject_GenericGetDict(args[0], nullptr));
  if (!dict) return nullptr;
  PyObject* d = dict.get();
  PlateauInputs in;
  Held held;
  PyObject* optimizer = read_plateau_inputs(held, d, args[1], &in) ? optimizer_of(held, d) : nullptr;
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return PyErr_Occurred() ? nullptr : reference_path();
  const double old_best = in.state.best;
  PyObject* last_lr = plateau_pass(groups.get(), in);
  if (last_lr == nullptr || last_lr == Py_None) return last_lr;
  PyObject* best = improved(old_best, in.state.best) ? PyFloat_FromDouble(in.state.best) : Py_NewRef(Py_None);
  return Py_BuildValue("(NNLL)", last_lr, best, static_cast<long long>(in.state.num_bad_epochs),
                       static_cast<long long>(in.state.cooldown_counter));
}

PyMethodDef plateau_methods[] = {
    {"plateau_get_lr", SCHEDX_FASTCALL(plateau_get_lr), METH_FASTCALL,
     "ReduceLROnPlateau's bookkeeping and reduction, read from its dict."},
    {"plateau_criterion", SCHEDX_FASTCALL(plateau_criterion), METH_FASTCALL,
     "torch's _is_better dispatch, as formulas.h's PlateauCriterion."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

// Its step takes the metric.
const EngineFamily kPlateauFamily{1, accepts_anything, plain_plateau_step, plateau_methods};

}  // namespace schedx
