// The WarmRestarts family: CosineAnnealingWarmRestarts, whose step does the restart bookkeeping
// (rules/formulas.h's advance_warm_restart, which tensor mode runs too) before its StepPlan.
#include "families/plan.h"

namespace schedx {
namespace {

// torch's CosineAnnealingWarmRestarts.step() without an epoch, past its first, with int T_cur, T_i
// and T_mult: the restart bookkeeping, then every group's LR from the closed form. (Its step never
// counts `_step_count`.) True; False with nothing changed.
PyObject* plain_warm_restarts_step(const PlainClass&, PyObject* scheduler, PyObject* const*) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return nullptr;
  PyObject* d = dict.get();
  int64_t last_epoch, t_cur, t_i, t_mult;
  double h[kMaxSettings];
  Held held;
  PyObject* base_lrs;
  if (!dict_items(held, d, {{names.base_lrs, &base_lrs}}) || !read_dict_real(d, names.eta_min, &h[2]) ||
      !read_dict_int64(d, names.last_epoch, &last_epoch) || last_epoch < 0 ||
      !exact_counters(last_epoch, 0) || !read_dict_int64(d, names.t_cur, &t_cur) ||
      !read_dict_int64(d, names.t_i, &t_i) || !read_dict_int64(d, names.t_mult, &t_mult) ||
      !exact_counters(t_cur, 0) || !flag_lets_go_quietly(d))
    return declined();
  h[0] = static_cast<double>(t_cur);
  h[1] = static_cast<double>(t_i);
  if (!exact_int(h[0]) || !exact_int(h[1]) || !exact_int(static_cast<double>(t_mult)) ||
      !advance_warm_restart(&h[0], &h[1], static_cast<double>(t_mult)))
    Py_RETURN_FALSE;
  PyObject* optimizer = optimizer_of(held, d);
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return declined();
  Ref last_lr(apply_plan(groups.get(), base_lrs,
                         plan_recursive_step(Kind::CosineAnnealingWarmRestarts, 0.0, 0, false, h),
                         LastLrOwner{d}));
  if (!last_lr) return nullptr;
  if (last_lr.get() == Py_None) Py_RETURN_FALSE;
  if (!set_item(d, names.t_cur, PyLong_FromLongLong(static_cast<int64_t>(h[0]))) ||
      !set_item(d, names.t_i, PyLong_FromLongLong(static_cast<int64_t>(h[1]))) ||
      !set_item(d, names.last_epoch, PyLong_FromLongLong(last_epoch + 1)) ||
      PyDict_SetItem(d, names.get_lr_called_within_step, Py_False) < 0 ||
      !store_last_lr(d, last_lr.get()))
    return nullptr;
  Py_RETURN_TRUE;
}

}  // namespace

const EngineFamily kWarmRestartsFamily{0, accepts_anything, plain_warm_restarts_step, nullptr};

}  // namespace schedx
