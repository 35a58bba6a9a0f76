// The names the engine looks up and stores, interned once at import: param-group keys, OneCycleLR's
// phase keys, and the attributes of the schedulers' instance dicts. One list, X(member, text): the
// struct's members and the interning both come from it.
#pragma once

#include <Python.h>

#define SCHEDX_NAMES(X) \
  X(lr, "lr") \
  X(momentum, "momentum") \
  X(betas, "betas") \
  X(swa_lr, "swa_lr") \
  X(end_step, "end_step") \
  X(start_lr, "start_lr") \
  X(end_lr, "end_lr") \
  X(start_momentum, "start_momentum") \
  X(end_momentum, "end_momentum") \
  X(kind, "_kind") \
  X(setting_values, "_setting_values") \
  X(closed_form_setting_values, "_closed_form_setting_values") \
  X(is_initial, "_is_initial") \
  X(keeps_lrs, "_keeps_lrs") \
  X(last_epoch, "last_epoch") \
  X(step_count, "_step_count") \
  X(base_lrs, "base_lrs") \
  X(get_lr_called_within_step, "_get_lr_called_within_step") \
  X(last_lr, "_last_lr") \
  X(optimizer, "optimizer") \
  X(param_groups, "param_groups") \
  X(schedulers, "_schedulers") \
  X(python_step, "_python_step") \
  X(milestones, "_milestones") \
  X(best, "best") \
  X(mode, "mode") \
  X(threshold_mode, "threshold_mode") \
  X(threshold, "threshold") \
  X(patience, "patience") \
  X(cooldown, "cooldown") \
  X(cooldown_counter, "cooldown_counter") \
  X(num_bad_epochs, "num_bad_epochs") \
  X(factor, "factor") \
  X(eps, "eps") \
  X(min_lrs, "min_lrs") \
  X(min, "min") \
  X(max, "max") \
  X(rel, "rel") \
  X(abs, "abs") \
  X(anneal_func_type, "_anneal_func_type") \
  X(total_steps, "total_steps") \
  X(cycle_momentum, "cycle_momentum") \
  X(schedule_phases, "_schedule_phases") \
  X(use_beta1, "use_beta1") \
  X(cos, "cos") \
  X(linear, "linear") \
  X(anneal_func, "anneal_func") \
  X(anneal_epochs, "anneal_epochs") \
  X(eta_min, "eta_min") \
  X(t_cur, "T_cur") \
  X(t_i, "T_i") \
  X(t_mult, "T_mult") \
  X(total_size, "total_size") \
  X(scale_fn_custom, "_scale_fn_custom") \
  X(scale_fn_ref, "_scale_fn_ref") \
  X(scale_mode, "scale_mode") \
  X(step_ratio, "step_ratio") \
  X(max_lrs, "max_lrs") \
  X(base_momentums, "base_momentums") \
  X(max_momentums, "max_momentums") \
  X(func, "func") \
  X(args, "args") \
  X(cycle, "cycle") \
  X(step, "step") \
  X(get_last_lr, "get_last_lr")

namespace schedx {

struct Names {
#define SCHEDX_NAME_MEMBER(member, text) PyObject* member;
  SCHEDX_NAMES(SCHEDX_NAME_MEMBER)
#undef SCHEDX_NAME_MEMBER
};

// Set by intern_names() when the module is imported (py/module.cpp), then read-only.
extern Names names;

bool intern_names();

}  // namespace schedx
