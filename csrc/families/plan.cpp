// The Plan family: the schedulers whose step is one StepPlan (rules/formulas.h, kinds in
// rules/kinds.h) read from their settings, alone or as the children of a composite (families/
// composites.cpp), whose steps run here in one visit per group (step_stages).
#include "families/plan.h"

namespace schedx {
namespace {

// `ints` gets one bit per setting that is a Python int (see with_python_types).
bool read_reals(PyObject* settings, double* h, unsigned* ints) {
  for (int i = 0; i < kMaxSettings; ++i) h[i] = 0.0;
  *ints = 0;
  if (!PyTuple_CheckExact(settings)) {
    *ints = PyLong_CheckExact(settings) ? 1u : 0u;
    return read_real(settings, &h[0]);
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(settings);
  if (n > kMaxSettings) return false;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* v = PyTuple_GET_ITEM(settings, i);
    if (!read_real(v, &h[i])) return false;
    if (PyLong_CheckExact(v)) *ints |= 1u << i;
  }
  return true;
}

// The settings of `kind` whose Python int makes torch's factor a Python int: `gamma ** k` (exact
// in Python at any size, rounded in a double) and ConstantLR's closed `factor + (epoch >= total) *
// (1 - factor)`. An int LR times it stays an int in torch, and past 2**53 its value is not the
// double's; the engine computes floats only.
unsigned int_factor_settings(Kind kind, bool closed_form) {
  switch (kind) {
    case Kind::MultiStepLR: return 1u << 1;  // gamma, in both forms
    case Kind::StepLR: return closed_form ? 1u << 1 : 0u;
    case Kind::ExponentialLR:
    case Kind::ConstantLR: return closed_form ? 1u : 0u;
    default: return 0u;
  }
}

// `plan`, or a failed one (torch's code runs the step) when it scales by a factor that is a Python
// int in torch (`ints`: read_reals).
StepPlan with_python_types(const StepPlan& plan, Kind kind, bool closed_form, unsigned ints) {
  if (plan.rule != GroupRule::Keep && (ints & int_factor_settings(kind, closed_form)) != 0)
    return failed_plan();
  return plan;
}

// One StepPlan scheduler's part in a step: its plan, the base LRs its rule may read (owned), and its
// counters before the step. A registered scheduler's `dict` (owned) is where its step is recorded;
// any other is advanced through its attributes before its settings are read (`advanced`).
struct ChainedStage {
  StepPlan plan;
  PyObject* base_lrs = nullptr;
  PyObject* dict = nullptr;
  PyObject* new_epoch = nullptr;  // registered: `last_epoch + 1`, as the int the step stores
  PyObject* last_lr = nullptr;    // the `_last_lr` the step gives it
  int64_t last_epoch = 0;
  int64_t step_count = 0;
  bool advanced = false;
};

struct ChainedStages {
  ChainedStage stage[kMaxChained];
  ~ChainedStages() {
    for (auto& st : stage) {
      Py_XDECREF(st.base_lrs);
      Py_XDECREF(st.dict);
      Py_XDECREF(st.new_epoch);
      Py_XDECREF(st.last_lr);
    }
  }
};

bool set_counters(PyObject* child, int64_t last_epoch, int64_t step_count) {
  return set_attr(child, names.step_count, PyLong_FromLongLong(step_count)) &&
         set_attr(child, names.last_epoch, PyLong_FromLongLong(last_epoch));
}

// The settings a registered class's rule reads, from the instance dict, at the step's new epoch.
// MultiStepLR's first is torch's `milestones[epoch] if epoch in milestones else 0`.
bool read_registered_settings(const PlainClass& cls, PyObject* dict, PyObject* epoch, double* h,
                              unsigned* ints) {
  for (int i = 0; i < kMaxSettings; ++i) h[i] = 0.0;
  *ints = 0;
  const Py_ssize_t n = PyTuple_GET_SIZE(cls.setting_names);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* v = PyDict_GetItemWithError(dict, PyTuple_GET_ITEM(cls.setting_names, i));
    if (v != nullptr && i == 0 && cls.kind == Kind::MultiStepLR) {
      if (reinterpret_cast<PyObject*>(Py_TYPE(v)) != cls.extra) return false;
      // Held through the lookup, which can run a milestone's __eq__.
      Ref milestones((Py_INCREF(v), v));
      v = PyDict_GetItemWithError(milestones.get(), epoch);
      if (v == nullptr && !PyErr_Occurred()) continue;  // not a milestone: h[0] = 0
      if (v == nullptr || !read_real(v, &h[i])) return false;
      continue;
    }
    if (v == nullptr || !read_real(v, &h[i])) return false;
    if (PyLong_CheckExact(v)) *ints |= 1u << i;
  }
  return true;
}

// Reads what a registered scheduler's plain step reads, changing nothing. False (error cleared) when
// the step is not plain: its first step (torch's warns), counters that are not ints, a setting that is
// not a float or an int, a rule on which Python's arithmetic would raise.
bool read_registered_stage(const PlainClass& cls, PyObject* scheduler, ChainedStage* st) {
  st->dict = PyObject_GenericGetDict(scheduler, nullptr);
  if (st->dict == nullptr) return false;
  PyObject* dict = st->dict;
  if (!read_plain_counters(dict, &st->last_epoch, &st->step_count)) return false;
  // Absent from the dict, `_is_initial` is the class's False.
  PyObject* found = PyDict_GetItemWithError(dict, names.is_initial);
  Ref is_initial_obj(found ? (Py_INCREF(found), found) : nullptr);
  const int is_initial = !is_initial_obj ? 0 : PyObject_IsTrue(is_initial_obj.get());
  st->new_epoch = PyLong_FromLongLong(st->last_epoch + 1);
  double h[kMaxSettings];
  unsigned ints;
  if (is_initial < 0 || st->new_epoch == nullptr ||
      !read_registered_settings(cls, dict, st->new_epoch, h, &ints))
    return false;
  st->plan = with_python_types(plan_recursive_step(cls.kind, static_cast<double>(st->last_epoch + 1),
                                                   st->step_count + 1, is_initial, h),
                               cls.kind, false, ints);
  if (!st->plan.ok) return false;
  // Read only by the rules that read them, as torch's get_lr() reads them.
  if (!rule_reads_base_lr(st->plan.rule)) return true;
  st->base_lrs = PyDict_GetItemWithError(dict, names.base_lrs);
  Py_XINCREF(st->base_lrs);
  return st->base_lrs != nullptr;
}

// Reads a StepPlan scheduler's rule through its attributes, for a class that is not registered (or
// the Python layer's get_lr()): `_kind`, `_setting_values(scheduler)`, `_keeps_lrs()` (torch's
// `_is_initial`, or its test of the epoch before torch 2.8), the counters and `base_lrs`. Advancing (a chained child's plain step), its counters advance first, as its step()
// does (its `_setting_values` may read the new epoch), and the rule is the new epoch's; otherwise the
// rule is the current counters'. False (error cleared by the caller) as read_registered_stage.
bool read_stage_attributes(PyObject* scheduler, bool advance, ChainedStage* stage) {
  Ref kind_obj(attribute(scheduler, names.kind));
  Ref settings_fn(attribute(scheduler, names.setting_values));
  Ref keeps_lrs_fn(attribute(scheduler, names.keeps_lrs));
  Kind kind;
  if (!kind_obj || !settings_fn || !keeps_lrs_fn || !parse_kind(kind_obj.get(), &kind) ||
      !read_attr_int64(scheduler, names.last_epoch, &stage->last_epoch) ||
      !read_attr_int64(scheduler, names.step_count, &stage->step_count) ||
      !exact_counters(stage->last_epoch, stage->step_count))
    return false;
  const int64_t step = advance ? 1 : 0;
  if (advance) {
    if (!set_counters(scheduler, stage->last_epoch + 1, stage->step_count + 1)) return false;
    stage->advanced = true;
  }
  Ref keeps_lrs(PyObject_CallNoArgs(keeps_lrs_fn.get()));
  const int is_initial = keeps_lrs ? PyObject_IsTrue(keeps_lrs.get()) : -1;
  Ref settings(PyObject_CallOneArg(settings_fn.get(), scheduler));
  double h[kMaxSettings];
  unsigned ints;
  if (is_initial < 0 || !settings || !read_reals(settings.get(), h, &ints)) return false;
  stage->plan = with_python_types(plan_recursive_step(kind, static_cast<double>(stage->last_epoch + step),
                                                      stage->step_count + step, is_initial, h),
                                  kind, false, ints);
  if (!stage->plan.ok) return false;
  if (!rule_reads_base_lr(stage->plan.rule)) return true;
  stage->base_lrs = attribute(scheduler, names.base_lrs);
  return stage->base_lrs != nullptr;
}

// Whether a chained child's own optimizer, the one its step() would write, is the chain's.
bool steps_optimizer(PyObject* child, const ChainedStage& st, PyObject* optimizer) {
  if (st.dict != nullptr) return PyDict_GetItemWithError(st.dict, names.optimizer) == optimizer;
  Ref own(attribute(child, names.optimizer));
  return own.get() == optimizer;
}

// Reads a stage; with `optimizer` (a chain's), also checks that the child steps that optimizer.
bool read_chained_stage(PyObject* child, PyObject* optimizer, ChainedStage* st) {
  const PlainClass* cls = plain_class_of(Py_TYPE(child));
  const bool ok = (cls != nullptr && cls->id == Family::Plan
                       ? read_registered_stage(*cls, child, st)
                       : read_stage_attributes(child, true, st)) &&
                  (optimizer == nullptr || steps_optimizer(child, *st, optimizer));
  if (!ok) PyErr_Clear();
  return ok;
}

// Puts back the counters of the children already advanced; returns the reference path.
PyObject* undo_chained_stages(PyObject* const* children, Py_ssize_t n_stages, ChainedStages& stages) {
  for (Py_ssize_t k = 0; k < n_stages; ++k) {
    const ChainedStage& st = stages.stage[k];
    if (st.advanced && !set_counters(children[k], st.last_epoch, st.step_count)) return nullptr;
  }
  return reference_path();
}

// Records a stage's step as its step() would: the counters (a registered scheduler's; the others were
// advanced before), the flag torch's get_lr() call leaves False, and `_last_lr`.
bool finish_stage(PyObject* child, const ChainedStage& st) {
  if (st.dict == nullptr)
    return PyObject_SetAttr(child, names.get_lr_called_within_step, Py_False) == 0 &&
           PyObject_SetAttr(child, names.last_lr, st.last_lr) == 0;
  return record_plain_step(st.dict, st.step_count, st.new_epoch, st.last_lr);
}

// The groups' pass of more than one stage: each child's rule in order on the value the previous one
// produced, as torch's children read what the one before wrote, every child's `_last_lr` filled
// (refilled where refillable_last_lr allows). Returns the last child's list (the others are left in
// their stages), or None with nothing changed.
PyObject* chain_pass_over_groups(PyObject* groups, ChainedStages& stages, Py_ssize_t n_stages) {
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  // The last child's list is the one write_groups fills; the others are filled here, in order.
  LastLrList lists[kMaxChained - 1];
  for (Py_ssize_t k = 0; k + 1 < n_stages; ++k) {
    if (!lists[k].start(n, LastLrOwner{stages.stage[k].dict})) return nullptr;
    if (!lists[k].refilled() && !last_lr_lets_go_quietly(stages.stage[k].dict, n))
      return reference_path();
  }
  // A new list's allocation can run the garbage collector, whose finalizers can change the groups.
  if (PyList_GET_SIZE(groups) != n || !last_lr_lets_go_quietly(stages.stage[n_stages - 1].dict, n))
    return reference_path();
  PyObject* last = write_groups(
      groups, MomentumKey::None,
      [&](Py_ssize_t i, PyObject*, double lr, GroupResult* r) {
        // The float object holding `lr` while stages keep it: a child that keeps the LR lists the
        // object it read, as torch's `group["lr"]` does.
        PyObject* kept = r->current;
        for (Py_ssize_t k = 0; k < n_stages; ++k) {
          const ChainedStage& st = stages.stage[k];
          if (st.plan.rule != GroupRule::Keep) {
            double base_lr = 0.0;
            if (rule_reads_base_lr(st.plan.rule) && !read_list_real(st.base_lrs, i, &base_lr))
              return false;
            lr = apply_group_rule(st.plan, lr, base_lr);
            kept = nullptr;
          }
          if (k + 1 == n_stages) break;
          PyObject* value = kept != nullptr ? (Py_INCREF(kept), kept) : PyFloat_FromDouble(lr);
          if (value == nullptr || !lists[k].set(i, value)) return false;
          kept = value;
        }
        r->lr = lr;
        r->write = kept == nullptr || kept != r->current;
        return true;
      },
      LastLrOwner{stages.stage[n_stages - 1].dict});
  if (last == nullptr || last == Py_None) {
    for (Py_ssize_t k = 0; k + 1 < n_stages; ++k) lists[k].undo();
    return last;
  }
  for (Py_ssize_t k = 0; k + 1 < n_stages; ++k) stages.stage[k].last_lr = lists[k].get();
  return last;
}


// Whether an unregistered child's previous `_last_lr` lets go quietly when finish_stage replaces it
// through its attributes with a new list (nothing refills it): held elsewhere too, or floats. Else (an
// object with a finalizer, which torch lets go of before the next child steps) its children step one
// by one.
bool attribute_last_lr_lets_go_quietly(PyObject* child) {
  Ref dict(PyObject_GenericGetDict(child, nullptr));
  PyObject* old = dict ? PyDict_GetItemWithError(dict.get(), names.last_lr) : nullptr;
  PyErr_Clear();
  return old != nullptr && (Py_REFCNT(old) > 1 || releases_quietly(old));
}

// Whether a scheduler is listed more than once: torch steps it once per listing, each step reading
// the counters the one before left, where a fused pass reads every stage before it writes any.
bool lists_a_child_twice(PyObject* const* children, Py_ssize_t n_stages) {
  for (Py_ssize_t k = 1; k < n_stages; ++k)
    for (Py_ssize_t j = 0; j < k; ++j)
      if (children[j] == children[k]) return true;
  return false;
}

}  // namespace

PyObject* apply_plan(PyObject* groups, PyObject* base_lrs, const StepPlan& plan,
                     const LastLrOwner& refill) {
  if (!plan.ok) return reference_path();
  if (plan.rule == GroupRule::Keep) return current_lrs(groups, refill);
  const bool reads_base = rule_reads_base_lr(plan.rule);
  if (!PyList_CheckExact(groups) ||
      (reads_base && !is_list_of_length(base_lrs, PyList_GET_SIZE(groups))))
    return reference_path();
  return write_groups(groups, MomentumKey::None,
                      [&](Py_ssize_t i, PyObject*, double lr, GroupResult* r) {
                        double base_lr = 0.0;
                        if (reads_base && !read_list_real(base_lrs, i, &base_lr)) return false;
                        r->lr = apply_group_rule(plan, lr, base_lr);
                        return true;
                      },
                      refill);
}

// The children's rules in one visit per group (chain_pass_over_groups for more than one), each child's
// step recorded by finish_stage.
PyObject* step_stages(PyObject* groups, PyObject* optimizer, PyObject* const* children,
                      Py_ssize_t n_stages, PyObject* also_listed_by) {
  if (!PyList_CheckExact(groups) || n_stages < 1 || n_stages > kMaxChained ||
      lists_a_child_twice(children, n_stages))
    return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  ChainedStages stages;
  for (Py_ssize_t k = 0; k < n_stages; ++k) {
    ChainedStage& st = stages.stage[k];
    if (!read_chained_stage(children[k], optimizer, &st) ||
        (rule_reads_base_lr(st.plan.rule) && !is_list_of_length(st.base_lrs, n)) ||
        (st.dict == nullptr && !attribute_last_lr_lets_go_quietly(children[k])))
      return undo_chained_stages(children, n_stages, stages);
  }
  PyObject* last = nullptr;
  if (n_stages == 1) {
    ChainedStage& st = stages.stage[0];
    last = apply_plan(groups, st.base_lrs, st.plan, LastLrOwner{st.dict, also_listed_by});
  } else {
    last = chain_pass_over_groups(groups, stages, n_stages);
  }
  if (last == nullptr) return nullptr;
  if (last == Py_None) {
    Py_DECREF(last);
    return undo_chained_stages(children, n_stages, stages);
  }
  stages.stage[n_stages - 1].last_lr = last;
  for (Py_ssize_t k = 0; k < n_stages; ++k)
    if (!finish_stage(children[k], stages.stage[k])) return nullptr;
  Py_INCREF(last);
  return last;
}

namespace {

// The groups of a scheduler's optimizer, read through its attributes; null, with no error, when it
// has none (torch's code then raises its error).
PyObject* groups_of(PyObject* scheduler) {
  Ref optimizer(attribute(scheduler, names.optimizer));
  PyObject* groups = optimizer ? param_groups_of(optimizer.get()) : nullptr;
  PyErr_Clear();
  return groups;
}

// plan_get_lr(scheduler): get_lr() of a StepPlan scheduler whose Python step has advanced its
// counters, its rule read as read_stage_attributes reads it, applied to every group; None for
// torch's code.
PyObject* plan_get_lr(PyObject*, PyObject* scheduler) {
  ChainedStages stages;
  ChainedStage& st = stages.stage[0];
  if (!read_stage_attributes(scheduler, false, &st)) {
    PyErr_Clear();
    return reference_path();
  }
  Ref groups(groups_of(scheduler));
  return groups ? apply_plan(groups.get(), st.base_lrs, st.plan) : reference_path();
}

// plan_closed_form_lr(scheduler): _get_closed_form_lr() of a StepPlan scheduler at its `last_epoch`,
// with `_closed_form_setting_values(scheduler)`, applied to every group; None for torch's code.
PyObject* plan_closed_form_lr(PyObject*, PyObject* scheduler) {
  Ref kind_obj(attribute(scheduler, names.kind));
  Ref settings_fn(attribute(scheduler, names.closed_form_setting_values));
  Ref epoch_obj(attribute(scheduler, names.last_epoch));
  Ref base_lrs(attribute(scheduler, names.base_lrs));
  Kind kind;
  double epoch, h[kMaxSettings];
  unsigned ints;
  Ref settings(kind_obj && settings_fn && epoch_obj && base_lrs
                   ? PyObject_CallOneArg(settings_fn.get(), scheduler)
                   : nullptr);
  if (!settings || !parse_kind(kind_obj.get(), &kind) || !read_real(epoch_obj.get(), &epoch) ||
      !read_reals(settings.get(), h, &ints)) {
    PyErr_Clear();
    return reference_path();
  }
  Ref groups(groups_of(scheduler));
  if (!groups) return reference_path();
  return apply_plan(groups.get(), base_lrs.get(),
                    with_python_types(plan_closed_form_step(kind, epoch, h), kind, true, ints));
}

// A registered StepPlan scheduler's plain step: step_stages of the one scheduler.
PyObject* plain_plan_step(const PlainClass&, PyObject* scheduler, PyObject* const*) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  Held held;
  PyObject* optimizer = dict ? optimizer_of(held, dict.get()) : nullptr;
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return declined();
  Ref last(step_stages(groups.get(), nullptr, &scheduler, 1));
  if (!last) return nullptr;
  return PyBool_FromLong(last.get() != Py_None);
}

// Its settings are at most kinds.h's; MultiStepLR's `extra` is its milestones' Counter type.
bool accepts_plan(const PlainClass& cls) {
  return PyTuple_GET_SIZE(cls.setting_names) <= kMaxSettings &&
         (cls.kind != Kind::MultiStepLR || PyType_Check(cls.extra));
}

PyMethodDef plan_methods[] = {
    {"plan_get_lr", plan_get_lr, METH_O,
     "A StepPlan scheduler's get_lr() at its current counters, applied to every group."},
    {"plan_closed_form_lr", plan_closed_form_lr, METH_O,
     "A StepPlan scheduler's _get_closed_form_lr(), applied to every group."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

const EngineFamily kPlanFamily{0, accepts_plan, plain_plan_step, plan_methods};

}  // namespace schedx
