// The all-or-nothing group writer: one visit per param group, every value it replaces kept until the
// pass has written them all, so that a group that cannot be computed exactly puts every group back as it
// was and hands the step to torch's code. Every family's pass over the groups goes through write_groups.
#pragma once

#include "py/objects.h"

namespace schedx {

inline bool has_betas_sequence(PyObject* group) {
  PyObject* betas = PyDict_GetItemWithError(group, names.betas);
  if (betas == nullptr) {
    PyErr_Clear();
    return false;
  }
  return PyTuple_CheckExact(betas) || PyList_CheckExact(betas);
}

inline PyObject* group_changed_error() {
  PyErr_SetString(PyExc_RuntimeError,
                  "schedx: the optimizer's param groups or a scheduler's state were changed while a "
                  "scheduler step was writing them");
  return nullptr;
}

// The object written as a group's momentum: a float, or `betas` with its first entry replaced,
// built as torch builds it: (momentum, *betas[1:]).
inline PyObject* new_momentum_object(PyObject* group, double momentum, bool use_beta1) {
  if (!use_beta1) return PyFloat_FromDouble(momentum);
  PyObject* found = PyDict_GetItemWithError(group, names.betas);
  if (found == nullptr || !(PyTuple_CheckExact(found) || PyList_CheckExact(found)))
    return PyErr_Occurred() ? nullptr : group_changed_error();
  Ref betas((Py_INCREF(found), found));
  const Py_ssize_t len = PySequence_Fast_GET_SIZE(found);
  Ref first(PyFloat_FromDouble(momentum));
  if (!first) return nullptr;
  PyObject* tuple = PyTuple_New(len > 0 ? len : 1);
  if (tuple == nullptr) return nullptr;
  Py_INCREF(first.get());
  PyTuple_SET_ITEM(tuple, 0, first.get());
  // The tuple's allocation may have run Python code that resized a list of betas.
  const Py_ssize_t kept = PySequence_Fast_GET_SIZE(found);
  for (Py_ssize_t k = 1; k < len; ++k) {
    PyObject* item = k < kept ? PySequence_Fast_ITEMS(found)[k] : Py_None;
    Py_INCREF(item);
    PyTuple_SET_ITEM(tuple, k, item);
  }
  return tuple;
}

// What a step replaced (under a key of a group's dict, or in a list), kept so that the step can be
// undone. An exact float is kept as its value and the object itself let go at once, as the floor
// loop's store does: its memory is then the next new float's, still in cache, and freeing a float runs
// no Python code. Anything else that lets go quietly (releases_quietly) is held until the step ends.
// An object whose release could run Python code (a finalizer, a tensor's deallocation, which can also
// let other threads run) is not replaced at all: the step is left to torch's code, which lets go of it
// at torch's point of the step, so nothing the step still uses can change under it. Sixteen bytes and
// no constructor: a step keeps one for each group it writes, and a buffer of them is not written before
// it is used (each index the step reaches is given keep() or keep_nothing()).
class ReplacedValue {
 public:
  // Records `old` (borrowed; null for a key the group did not have) before it is replaced; false, with
  // nothing recorded, when letting go of it could run Python code.
  bool keep(PyObject* old) {
    if (old != nullptr && PyFloat_CheckExact(old)) {
      state_ = State::Float;
      value_ = PyFloat_AS_DOUBLE(old);
      return true;
    }
    return keep_other(old);
  }
  void keep_nothing() { state_ = State::Unchanged; }
  // keep() of anything but a float, out of line: the float's path is every group's.
  [[gnu::noinline]] bool keep_other(PyObject* old) {
    if (old != nullptr && !releases_quietly(old)) {
      state_ = State::Unchanged;
      return false;
    }
    state_ = old == nullptr ? State::Absent : State::Held;
    Py_XINCREF(old);
    held_ = old;
    return true;
  }
  // Puts the value back under `key`, or removes a key the group did not have; best effort, as the
  // step is already failing with its own error or handing over to torch's code.
  void put_back(PyObject* group, PyObject* key) const {
    if (state_ == State::Unchanged) return;
    PendingError pending;
    if (state_ == State::Absent) {
      if (PyDict_DelItem(group, key) < 0) PyErr_Clear();
    } else {
      Ref value(replaced());
      if (!value || PyDict_SetItem(group, key, value.get()) < 0) PyErr_Clear();
    }
  }
  // Puts the value back as item i of a list; None if even that float cannot be allocated (a list
  // holds no null).
  void put_back(PyObject* list, Py_ssize_t i) const {
    if (state_ == State::Unchanged) return;
    PendingError pending;
    PyObject* value = replaced();
    if (value == nullptr) {
      PyErr_Clear();
      value = (Py_INCREF(Py_None), Py_None);
    }
    PyObject* current = PyList_GET_ITEM(list, i);
    PyList_SET_ITEM(list, i, value);
    Py_XDECREF(current);
  }
  void release() {
    if (state_ == State::Held) Py_DECREF(held_);
    state_ = State::Unchanged;
  }

 private:
  // The replaced value (a new reference), as an equal float or the held object.
  PyObject* replaced() const {
    if (state_ == State::Float) return PyFloat_FromDouble(value_);
    Py_INCREF(held_);
    return held_;
  }

  enum class State : uint8_t { Unchanged, Float, Held, Absent };
  State state_;
  union {
    double value_;
    PyObject* held_;
  };
};
static_assert(sizeof(ReplacedValue) == 16, "one ReplacedValue a group: keep it small");

// The dict holding a scheduler's previous `_last_lr`, which its step may refill (refillable_last_lr),
// and a SequentialLR's dict, which lists its child's list as its own; null dict: a new list.
struct LastLrOwner {
  PyObject* dict = nullptr;
  PyObject* also_listed_by = nullptr;
};

// A scheduler's `_last_lr` list as its step may refill it in place: an exact list of n items that
// nothing but its owners' dicts refer to. A list someone took from get_last_lr() or state_dict() is not
// refillable: it keeps the LRs it had, as torch's does. Borrowed, and only until Python code runs next
// (a lookup's __eq__ can free it): LastLrList::start asks for it when it takes it. Null when it is not
// refillable.
inline PyObject* refillable_last_lr(const LastLrOwner& owner, Py_ssize_t n) {
  if (owner.dict == nullptr) return nullptr;
  PyObject* listed_too = nullptr;
  if (owner.also_listed_by != nullptr) {
    listed_too = PyDict_GetItemWithError(owner.also_listed_by, names.last_lr);
    PyErr_Clear();
  }
  PyObject* list = PyDict_GetItemWithError(owner.dict, names.last_lr);
  if (list == nullptr || !PyList_CheckExact(list) || PyList_GET_SIZE(list) != n) {
    PyErr_Clear();
    return nullptr;
  }
  return Py_REFCNT(list) == (listed_too == list ? 2 : 1) ? list : nullptr;
}

// Whether a chained child's previous `_last_lr` (in `dict`; null: an unregistered child, whose list
// step_stages checked when it read the child) lets go quietly when its step replaces it: torch lets go
// of it at the end of that child's own step, before the next child steps, where a fused chain is past
// every child's pass. A list of n items nobody else holds is refillable, and LastLrList checks its
// items itself.
inline bool last_lr_lets_go_quietly(PyObject* dict, Py_ssize_t n) {
  PyObject* old = dict != nullptr ? PyDict_GetItemWithError(dict, names.last_lr) : nullptr;
  if (old == nullptr) {
    const bool failed = PyErr_Occurred() != nullptr;
    PyErr_Clear();
    return !failed;
  }
  return Py_REFCNT(old) > 1 || (PyList_CheckExact(old) && PyList_GET_SIZE(old) == n) ||
         releases_quietly(old);
}

// A step's new `_last_lr`, filled in order of the groups: a new list, or the scheduler's previous
// one refilled in place (refillable_last_lr). Refilled, each previous LR object is let go as it is
// replaced, usually the last reference to the group's previous lr float, so that the next new float
// takes its memory as in the floor loop; a new list instead leaves the previous one's n floats to a
// pass of their own after the step. undo() puts a refilled list back as it was.
class LastLrList {
 public:
  LastLrList() = default;
  LastLrList(const LastLrList&) = delete;
  LastLrList& operator=(const LastLrList&) = delete;
  ~LastLrList() {
    release_replaced();
    Py_XDECREF(list_);
  }

  // A list of n to fill: the owner's previous one (refillable_last_lr) or a new one. False, with
  // MemoryError raised, when out of memory; once only.
  bool start(Py_ssize_t n, const LastLrOwner& owner) {
    PyObject* previous = refillable_last_lr(owner, n);
    refilled_ = previous != nullptr;
    list_ = refilled_ ? (Py_INCREF(previous), previous) : PyList_New(n);
    if (list_ == nullptr) return false;
    if (refilled_ && !replaced_.allocate(n)) {
      PyErr_NoMemory();
      return false;
    }
    return true;
  }
  // Puts `item` (a reference it takes) at i; i is the next index to fill. False (item let go) when a
  // refilled list has no index i any more (Python code run during the step shortened it) or its item
  // there cannot be let go of quietly (ReplacedValue::keep): the step then gives up.
  [[gnu::always_inline]] bool set(Py_ssize_t i, PyObject* item) {
    if (refilled_ && (i >= PyList_GET_SIZE(list_) || !replaced_[i].keep(PyList_GET_ITEM(list_, i))))
      return refuse(item);
    PyObject* previous = PyList_GET_ITEM(list_, i);
    PyList_SET_ITEM(list_, i, item);
    filled_ = i + 1;
    if (refilled_) Py_DECREF(previous);
    return true;
  }
  void undo() {
    if (refilled_)
      for (Py_ssize_t j = 0; j < filled_ && j < PyList_GET_SIZE(list_); ++j)
        replaced_[j].put_back(list_, j);
    release_replaced();
  }
  bool refilled() const { return refilled_; }
  // The filled list (new reference).
  PyObject* get() {
    release_replaced();
    Py_INCREF(list_);
    return list_;
  }

 private:
  // set()'s way out, out of line: its other path is every group's.
  [[gnu::noinline]] static bool refuse(PyObject* item) {
    Py_DECREF(item);
    return false;
  }
  void release_replaced() {
    if (refilled_)
      for (Py_ssize_t j = 0; j < filled_; ++j) replaced_[j].release();
    filled_ = 0;
  }

  PyObject* list_ = nullptr;
  GroupBuffer<ReplacedValue> replaced_;
  bool refilled_ = false;
  Py_ssize_t filled_ = 0;
};

// `_param_groups_val_list(optimizer, "lr")` for float LRs: the current lr objects in a new list, or
// None when one of them is something else (a tensor, which torch would clone), or when the groups
// changed under the call (a new list's allocation can run the garbage collector; a group's lookup, a
// key's __eq__). In the `refill` owner's list (refillable_last_lr), or a new list.
inline PyObject* current_lrs(PyObject* groups, const LastLrOwner& refill = {}) {
  if (!PyList_CheckExact(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  LastLrList last_lr;
  if (!last_lr.start(n, refill)) return nullptr;
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (PyList_GET_SIZE(groups) != n) {
      last_lr.undo();
      return reference_path();
    }
    Ref group((Py_INCREF(group_at(groups, i)), group_at(groups, i)));
    PyObject* lr =
        PyDict_CheckExact(group.get()) ? PyDict_GetItemWithError(group.get(), names.lr) : nullptr;
    if (lr == nullptr || !(PyFloat_CheckExact(lr) || PyLong_CheckExact(lr)) ||
        !last_lr.set(i, (Py_INCREF(lr), lr))) {
      PyErr_Clear();
      last_lr.undo();
      return reference_path();
    }
  }
  return last_lr.get();
}

// Where a scheduler writes momentum besides lr.
enum class MomentumKey { None, Momentum, Beta1 };

// One group's new values. `write` false keeps the group's lr object (ReduceLROnPlateau, a chain whose
// every stage keeps it). `current` is that object, for a rule that passes it on.
struct GroupResult {
  double lr = 0.0;
  double momentum = 0.0;
  bool write = true;
  PyObject* current = nullptr;
};

// Runs `rule(i, group, current_lr, &result)` on every group and writes the results, all in one visit
// per group (one lookup and one store of "lr", as the floor does), and returns the new `_last_lr`:
// the `refill` owner's list refilled (refillable_last_lr), or a new list.
//
// All-or-nothing: what each store replaces is kept (ReplacedValue), so when a group cannot be computed
// exactly (its lr is not a float, an input is not a float or an int, or torch's result would be an
// int: `rule` returns false) every group already written, and the refilled list, are put back as they
// were and None is returned, for torch's code to run the step. So it is when a store would let go of an
// object whose release could run Python code (ReplacedValue::keep). Python code can still run in the
// pass where the caller cannot rule it out: the garbage collector, which a betas tuple allocation can
// start, and a group's own keys (their __eq__, met by a lookup). So each group is held from its visit
// until the pass ends (put back into that very dict), and so is its lr object while its visit uses it;
// the group list is re-checked at every group and after the tuple's allocation, and a list changed
// under the pass gives None too.
template <typename Rule>
PyObject* write_groups(PyObject* groups, MomentumKey momentum, Rule&& rule,
                       const LastLrOwner& refill = {}) {
  if (!PyList_CheckExact(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  LastLrList last_lr;
  const bool with_momentum = momentum != MomentumKey::None;
  PyObject* momentum_key = momentum == MomentumKey::Beta1 ? names.betas : names.momentum;
  GroupBuffer<ReplacedValue> old_lrs(n), old_momenta(with_momentum ? n : 0);
  GroupBuffer<PyObject*> visited(n);
  if (!last_lr.start(n, momentum == MomentumKey::Beta1 ? LastLrOwner{} : refill)) return nullptr;
  if (!old_lrs.ok() || !old_momenta.ok() || !visited.ok()) return PyErr_NoMemory();

  Py_ssize_t written = 0, n_visited = 0;
  auto release_old = [&]() {
    for (Py_ssize_t j = 0; j < written; ++j) {
      old_lrs[j].release();
      if (with_momentum) old_momenta[j].release();
    }
  };
  // Last: a group taken out of the optimizer during the pass is freed here, which can run Python code.
  auto release_visited = [&]() {
    for (Py_ssize_t j = 0; j < n_visited; ++j) Py_DECREF(visited[j]);
  };
  auto put_back = [&](PyObject* result) {
    for (Py_ssize_t j = 0; j < written; ++j) {
      old_lrs[j].put_back(visited[j], names.lr);
      if (with_momentum) old_momenta[j].put_back(visited[j], momentum_key);
    }
    release_old();
    last_lr.undo();
    release_visited();
    return result;
  };

  for (Py_ssize_t i = 0; i < n; ++i) {
    if (PyList_GET_SIZE(groups) != n) return put_back(reference_path());
    PyObject* group = group_at(groups, i);
    if (!PyDict_CheckExact(group)) return put_back(reference_path());
    Py_INCREF(group);
    visited[i] = group;
    n_visited = i + 1;
    PyObject* found = PyDict_GetItemWithError(group, names.lr);
    Ref lr_obj(found ? (Py_INCREF(found), found) : nullptr);
    GroupResult r;
    r.current = lr_obj.get();
    // An int lr is left to torch's code: its arithmetic keeps ints (an int lr times an int factor is
    // an int there), where the engine writes floats.
    if (!lr_obj || !PyFloat_CheckExact(lr_obj.get()) ||
        !rule(i, group, PyFloat_AS_DOUBLE(lr_obj.get()), &r)) {
      PyErr_Clear();
      return put_back(reference_path());
    }
    if (!r.write) {
      old_lrs[i].keep_nothing();
      if (with_momentum) old_momenta[i].keep_nothing();
      written = i + 1;
      if (!last_lr.set(i, (Py_INCREF(lr_obj.get()), lr_obj.get()))) return put_back(reference_path());
      continue;
    }
    PyObject* new_lr = PyFloat_FromDouble(r.lr);
    Ref new_momentum(with_momentum ? new_momentum_object(group, r.momentum,
                                                         momentum == MomentumKey::Beta1)
                                   : nullptr);
    if (new_lr == nullptr || (with_momentum && !new_momentum)) {
      Py_XDECREF(new_lr);
      return put_back(nullptr);
    }
    // The momentum tuple's allocation may have run the garbage collector.
    PyObject* old_momentum =
        with_momentum ? PyDict_GetItemWithError(group, momentum_key) : nullptr;
    if (PyList_GET_SIZE(groups) != n || group_at(groups, i) != group ||
        (old_momentum == nullptr && with_momentum && PyErr_Occurred()) ||
        !old_lrs[i].keep(lr_obj.get())) {
      Py_DECREF(new_lr);
      PyErr_Clear();
      return put_back(reference_path());
    }
    if (with_momentum && !old_momenta[i].keep(old_momentum)) {
      old_lrs[i].release();
      Py_DECREF(new_lr);
      return put_back(reference_path());
    }
    written = i + 1;
    // The group first: the list's store then drops the last reference to its previous lr (but the
    // one lr_obj holds, let go at the end of the visit).
    const bool stored = PyDict_SetItem(group, names.lr, new_lr) == 0;
    if (!last_lr.set(i, new_lr)) return put_back(stored ? reference_path() : nullptr);
    if (!stored || (with_momentum && PyDict_SetItem(group, momentum_key, new_momentum.get()) < 0))
      return put_back(nullptr);
  }
  release_old();
  PyObject* list = last_lr.get();
  release_visited();
  return list;
}


inline MomentumKey momentum_key_of(bool cycle_momentum, bool use_beta1) {
  if (!cycle_momentum) return MomentumKey::None;
  return use_beta1 ? MomentumKey::Beta1 : MomentumKey::Momentum;
}
}  // namespace schedx
