// The OneCycle family: OneCycleLR, its phases read from `_schedule_phases` as torch's get_lr() reads
// them (at most rules/formulas.h's kMaxOneCyclePhases), momentum included.
#include "py/family.h"

namespace schedx {
namespace {

// The keys one OneCycleLR phase anneals between (held: a group's lookup can run a key's __eq__).
struct PhaseKeys {
  PyObject* start_lr;
  PyObject* end_lr;
  PyObject* start_momentum;
  PyObject* end_momentum;
};

// Phase p of `phases` (held by the caller), held by `held`; null when the list no longer has it (a
// phase dict's lookup can run a key's __eq__, which can change the list).
PyObject* phase_at(Held& held, PyObject* phases, Py_ssize_t p) {
  if (p >= PyList_GET_SIZE(phases) || !PyDict_CheckExact(PyList_GET_ITEM(phases, p))) return nullptr;
  return held.hold(PyList_GET_ITEM(phases, p));
}

bool read_end_step(PyObject* phases, Py_ssize_t p, double* end_step) {
  Held held;
  PyObject* phase = phase_at(held, phases, p);
  PyObject* end = phase ? PyDict_GetItemWithError(phase, names.end_step) : nullptr;
  return end != nullptr && read_real(end, end_step);
}

// The keys of phase p, the one the step is in (torch reads only that phase's): exact strs, which a
// group's lookup hashes without running Python code (torch builds them so; others go to torch's code).
bool read_phase_keys(Held& held, PyObject* phases, Py_ssize_t p, PhaseKeys* keys) {
  PyObject* phase = phase_at(held, phases, p);
  return phase != nullptr &&
         dict_items(held, phase, {{names.start_lr, &keys->start_lr},
                                  {names.end_lr, &keys->end_lr},
                                  {names.start_momentum, &keys->start_momentum},
                                  {names.end_momentum, &keys->end_momentum}}) &&
         PyUnicode_CheckExact(keys->start_lr) && PyUnicode_CheckExact(keys->end_lr) &&
         PyUnicode_CheckExact(keys->start_momentum) && PyUnicode_CheckExact(keys->end_momentum);
}

// What OneCycleLR's get_lr() reads besides the groups.
struct OneCycleInputs {
  double step, total_steps;
  PyObject* phases;  // borrowed
  bool anneal_cos, cycle_momentum, use_beta1;
};

// OneCycleLR's get_lr(), written to the groups; None for torch's code (its "Tried to step" error
// included).
PyObject* one_cycle_pass(PyObject* groups, const OneCycleInputs& in, const LastLrOwner& refill = {}) {
  if (!PyList_CheckExact(in.phases) || in.step > in.total_steps) return reference_path();
  const Py_ssize_t n_phases = PyList_GET_SIZE(in.phases);
  if (n_phases < 1 || n_phases > kMaxOneCyclePhases) return reference_path();
  double end_steps[kMaxOneCyclePhases];
  for (Py_ssize_t p = 0; p < n_phases; ++p)
    if (!read_end_step(in.phases, p, &end_steps[p])) {
      PyErr_Clear();
      return reference_path();
    }
  const OneCyclePhase phase = one_cycle_phase(in.step, end_steps, static_cast<int32_t>(n_phases));
  double cos_out = 0.0;
  Held held;
  PhaseKeys k;
  if (!phase.ok || (in.anneal_cos && !one_cycle_cos_out(phase.pct, &cos_out)) ||
      !read_phase_keys(held, in.phases, phase.index, &k)) {
    PyErr_Clear();
    return reference_path();
  }
  auto anneal = [&](double start, double end) {
    return in.anneal_cos ? one_cycle_anneal_cos(start, end, cos_out)
                         : one_cycle_anneal_linear(start, end, phase.pct);
  };
  return write_groups(groups, momentum_key_of(in.cycle_momentum, in.use_beta1),
                      [&](Py_ssize_t, PyObject* group, double, GroupResult* r) {
                        double start, end;
                        if (!read_dict_real(group, k.start_lr, &start) ||
                            !read_dict_real(group, k.end_lr, &end))
                          return false;
                        r->lr = anneal(start, end);
                        if (!in.cycle_momentum) return true;
                        if (!read_dict_real(group, k.start_momentum, &start) ||
                            !read_dict_real(group, k.end_momentum, &end) ||
                            (in.use_beta1 && !has_betas_sequence(group)))
                          return false;
                        r->momentum = anneal(start, end);
                        return true;
                      },
                      refill);
}

// OneCycleLR's get_lr() inputs from its dict at `step`: false for an
// anneal strategy other than torch's "cos" and "linear", or momentum cycling turned on by a state dict
// (no `use_beta1`: torch's get_lr() raises its error).
bool read_one_cycle_inputs(Held& held, PyObject* dict, double step, OneCycleInputs* in) {
  PyObject *strategy, *cycle_momentum;
  if (!dict_items(held, dict, {{names.anneal_func_type, &strategy},
                         {names.cycle_momentum, &cycle_momentum},
                         {names.schedule_phases, &in->phases}}) ||
      !PyUnicode_CheckExact(strategy) || !read_dict_real(dict, names.total_steps, &in->total_steps))
    return false;
  in->anneal_cos = is_name(strategy, names.cos);
  if (!in->anneal_cos && !is_name(strategy, names.linear)) return false;
  const int cycling = PyObject_IsTrue(cycle_momentum);
  if (cycling < 0) return false;
  in->cycle_momentum = cycling;
  in->use_beta1 = false;
  if (cycling) {
    PyObject* use_beta1 = held.hold(PyDict_GetItemWithError(dict, names.use_beta1));
    const int beta1 = use_beta1 == nullptr ? -1 : PyObject_IsTrue(use_beta1);
    if (beta1 < 0) return false;
    in->use_beta1 = beta1;
  }
  in->step = step;
  return true;
}

// one_cycle_get_lr(scheduler): OneCycleLR's _fused_lr().
PyObject* one_cycle_get_lr(PyObject*, PyObject* scheduler) {
  OneCycleInputs in;
  return get_lr_from_dict(
      scheduler,
      [&](Held& held, PyObject* dict, int64_t epoch, int64_t) {
        return read_one_cycle_inputs(held, dict, static_cast<double>(epoch), &in);
      },
      [&](PyObject* groups) { return one_cycle_pass(groups, in); });
}

PyObject* plain_one_cycle_step(const PlainClass&, PyObject* scheduler, PyObject* const*) {
  OneCycleInputs in;
  return counted_step(
      scheduler,
      [&](Held& held, PyObject* dict, int64_t epoch, int64_t) {
        return read_one_cycle_inputs(held, dict, static_cast<double>(epoch), &in);
      },
      [&](PyObject* groups, const LastLrOwner& refill) { return one_cycle_pass(groups, in, refill); });
}

PyMethodDef one_cycle_methods[] = {
    {"one_cycle_get_lr", one_cycle_get_lr, METH_O,
     "OneCycleLR's get_lr() at its current last_epoch, momentum included, read from its dict."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

const EngineFamily kOneCycleFamily{0, accepts_anything, plain_one_cycle_step, one_cycle_methods};

}  // namespace schedx
