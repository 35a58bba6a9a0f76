// What the Plan family (families/plan.cpp) gives the families built on its StepPlans: the composites
// (families/composites.cpp) and CosineAnnealingWarmRestarts (families/warm_restarts.cpp).
#pragma once

#include "py/family.h"

namespace schedx {

// The most children a composite's fused step takes (a longer chain steps through Python).
constexpr Py_ssize_t kMaxChained = 8;

// Applies one StepPlan to every group: the new `_last_lr` (the `refill` owner's list refilled where
// refillable_last_lr allows), or None with nothing changed.
PyObject* apply_plan(PyObject* groups, PyObject* base_lrs, const StepPlan& plan,
                     const LastLrOwner& refill = {});

// The step of `n_stages` StepPlan schedulers over the same groups, in one visit per group. A chain
// gives its `optimizer`, which every child must step (a single scheduler's groups are its own: null); a
// SequentialLR, its dict (`also_listed_by`, see refillable_last_lr). Every child's step is recorded;
// returns the last child's `_last_lr` (new reference), or None with nothing changed.
PyObject* step_stages(PyObject* groups, PyObject* optimizer, PyObject* const* children,
                      Py_ssize_t n_stages, PyObject* also_listed_by = nullptr);

}  // namespace schedx
