// The composites of Plan schedulers, two families: ChainedScheduler (Chain), whose children's steps
// run in one visit per group, and SequentialLR (Sequence) between milestones, whose current child steps
// (at a milestone, the next child starts from its closed form: SequentialLR's Python step).
#include "families/plan.h"

namespace schedx {
namespace {

// A copy of the list `source` (held by the caller): the `own` owner's list refilled where
// refillable_last_lr allows and its items let go quietly, else a new list. Null with RuntimeError when
// `source` changed size while the new list was allocated (the garbage collector's finalizers can).
PyObject* copy_into(PyObject* source, const LastLrOwner& own) {
  const Py_ssize_t n = PyList_GET_SIZE(source);
  LastLrList copy;
  if (!copy.start(n, own)) return nullptr;
  if (PyList_GET_SIZE(source) != n) return group_changed_error();
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(source, i);
    if (!copy.set(i, (Py_INCREF(item), item))) {
      copy.undo();
      return copy_into(source, LastLrOwner{});
    }
  }
  return copy.get();
}

// The items of `list` in a new tuple; null (no error) when the list changed size while the tuple was
// allocated (PyList_AsTuple would copy past its end then).
PyObject* snapshot(PyObject* list) {
  const Py_ssize_t n = PyList_GET_SIZE(list);
  PyObject* tuple = PyTuple_New(n);
  if (tuple == nullptr || PyList_GET_SIZE(list) == n) {
    for (Py_ssize_t k = 0; tuple != nullptr && k < n; ++k) {
      PyObject* item = PyList_GET_ITEM(list, k);
      Py_INCREF(item);
      PyTuple_SET_ITEM(tuple, k, item);
    }
    return tuple;
  }
  Py_DECREF(tuple);
  return nullptr;
}

// ChainedScheduler's step over `children`, StepPlan schedulers past their first step (checked by the
// caller) that all step `optimizer`. The chain's `_last_lr`, a copy of the last child's (in the
// chain's previous list when its dict `own` gives one to refill), or None with nothing changed.
PyObject* chain_pass(PyObject* optimizer, PyObject* children, PyObject* own = nullptr) {
  if (!PyList_CheckExact(children)) return reference_path();
  Py_INCREF(optimizer);
  Ref held_optimizer(optimizer);
  // A tuple: the list may change while a child's settings are read.
  Ref held(snapshot(children));
  if (!held) return PyErr_Occurred() ? nullptr : reference_path();
  Ref groups(param_groups_of(optimizer));
  if (!groups) return nullptr;
  Ref last(step_stages(groups.get(), optimizer, &PyTuple_GET_ITEM(held.get(), 0),
                       PyTuple_GET_SIZE(held.get())));
  if (!last || last.get() == Py_None) return last ? (Py_INCREF(Py_None), Py_None) : nullptr;
  return copy_into(last.get(), LastLrOwner{own});
}

// chain_get_lr(chain): chain_pass over the chain's `_schedulers` and `optimizer`, read through its
// attributes, for ChainedScheduler's Python step (which has checked its children): the chain's new
// `_last_lr`, or None for its children to step one by one.
PyObject* chain_get_lr(PyObject*, PyObject* chain) {
  Ref optimizer(attribute(chain, names.optimizer));
  Ref children(attribute(chain, names.schedulers));
  if (!optimizer || !children) return reference_path();
  return chain_pass(optimizer.get(), children.get());
}

// A registered ChainedScheduler's step when every child is a registered StepPlan scheduler: the
// children's steps in one pass, and the chain's own `_last_lr`. True; False with nothing changed.
PyObject* plain_chain_step(const PlainClass&, PyObject* chain, PyObject* const*) {
  Ref dict(PyObject_GenericGetDict(chain, nullptr));
  if (!dict) return nullptr;
  Held held;
  PyObject *children, *optimizer;
  if (!dict_items(held, dict.get(), {{names.schedulers, &children}, {names.optimizer, &optimizer}}) ||
      !PyList_CheckExact(children))
    return declined();
  for (Py_ssize_t k = 0; k < PyList_GET_SIZE(children); ++k) {
    PyObject* child = PyList_GET_ITEM(children, k);
    const PlainClass* cls = plain_class_of(Py_TYPE(child));
    if (cls == nullptr || cls->id != Family::Plan) Py_RETURN_FALSE;
    if (has_instance_hook(*cls, child, {names.step})) return declined();
  }
  Ref chain_lr(chain_pass(optimizer, children, dict.get()));
  if (!chain_lr) return nullptr;
  if (chain_lr.get() == Py_None) Py_RETURN_FALSE;
  if (PyDict_SetItem(dict.get(), names.last_lr, chain_lr.get()) < 0) return nullptr;
  Py_RETURN_TRUE;
}

// torch's `bisect_right(milestones, epoch)`, on a list of ints (false for anything else).
bool bisect_right_int(PyObject* milestones, int64_t epoch, Py_ssize_t* index) {
  Py_ssize_t lo = 0, hi = PyList_GET_SIZE(milestones);
  while (lo < hi) {
    const Py_ssize_t mid = (lo + hi) / 2;
    int64_t m;
    if (!read_int64(PyList_GET_ITEM(milestones, mid), &m)) return false;
    if (epoch < m) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  *index = lo;
  return true;
}

// A registered SequentialLR's step between milestones (at one, the next child starts from its closed
// form: Python's step), its current child a registered StepPlan scheduler past its first step:
// torch's `last_epoch += 1`, the child's step, and the child's `_last_lr` as its own. True; False
// with nothing changed.
PyObject* plain_sequence_step(const PlainClass&, PyObject* sequence, PyObject* const*) {
  Ref dict(PyObject_GenericGetDict(sequence, nullptr));
  if (!dict) return nullptr;
  Held held;
  PyObject *milestones, *children;
  int64_t last_epoch;
  Py_ssize_t index;
  if (!dict_items(held, dict.get(), {{names.milestones, &milestones}, {names.schedulers, &children}}) ||
      !PyList_CheckExact(milestones) ||
      !PyList_CheckExact(children) || !read_dict_int64(dict.get(), names.last_epoch, &last_epoch) ||
      !exact_counters(last_epoch, 0) || !bisect_right_int(milestones, last_epoch + 1, &index) ||
      index >= PyList_GET_SIZE(children))
    return declined();
  int64_t previous;
  if (index > 0 && read_int64(PyList_GET_ITEM(milestones, index - 1), &previous) &&
      previous == last_epoch + 1)
    Py_RETURN_FALSE;
  PyObject* child = PyList_GET_ITEM(children, index);
  const PlainClass* cls = plain_class_of(Py_TYPE(child));
  if (cls == nullptr || cls->id != Family::Plan) Py_RETURN_FALSE;
  held.hold(child);
  if (has_instance_hook(*cls, child, {names.step, names.get_last_lr})) return declined();
  Ref new_epoch(PyLong_FromLongLong(last_epoch + 1));
  Ref child_dict(PyObject_GenericGetDict(child, nullptr));
  PyObject* optimizer = child_dict ? optimizer_of(held, child_dict.get()) : nullptr;
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!new_epoch || !groups) return declined();
  Ref last(step_stages(groups.get(), nullptr, &child, 1, dict.get()));
  if (!last) return nullptr;
  if (last.get() == Py_None) Py_RETURN_FALSE;
  if (PyDict_SetItem(dict.get(), names.last_epoch, new_epoch.get()) < 0 ||
      PyDict_SetItem(dict.get(), names.last_lr, last.get()) < 0)
    return nullptr;
  Py_RETURN_TRUE;
}

PyMethodDef chain_methods[] = {
    {"chain_get_lr", chain_get_lr, METH_O,
     "ChainedScheduler.step over StepPlan children, in one visit per group."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

const EngineFamily kChainFamily{0, accepts_anything, plain_chain_step, chain_methods};
const EngineFamily kSequenceFamily{0, accepts_anything, plain_sequence_step, nullptr};

}  // namespace schedx
