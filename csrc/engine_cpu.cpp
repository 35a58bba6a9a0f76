// The fused CPU pass: one call per scheduler step reads every group's "lr" straight from the optimizer's
// param-group dicts, applies the rule from formulas.h, and writes the new floats (and momentum / betas)
// back, returning the list torch keeps as `_last_lr`.
//
// Every entry point checks all of its inputs before it writes anything. When a value is not a Python
// float or int (a tensor LR, a numpy float32, None), when a key is missing, or when Python's arithmetic
// would raise, it writes nothing and returns None: the caller then runs torch's own code for that step,
// which gives torch's result or torch's exception. The optimizer is never left half-updated.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <utility>

#include "expr.h"
#include "formulas.h"
#include "py_api.h"

namespace schedx {

// Tensor-LR programs (program_cpu.cpp).
PyObject* make_program(PyObject*, PyObject* const* args, Py_ssize_t nargs);
PyObject* run_program(PyObject*, PyObject* const* args, Py_ssize_t nargs);
PyObject* record_program(PyObject*, PyObject* const* args, Py_ssize_t nargs);
PyObject* constants(PyObject*, PyObject*);

namespace {

// Interned names: param-group keys, OneCycleLR phase keys and ReduceLROnPlateau attributes.
struct Names {
  PyObject* lr;
  PyObject* momentum;
  PyObject* betas;
  PyObject* swa_lr;
  PyObject* end_step;
  PyObject* start_lr;
  PyObject* end_lr;
  PyObject* start_momentum;
  PyObject* end_momentum;
  PyObject* kind;
  PyObject* setting_values;
  PyObject* is_initial;
  PyObject* last_epoch;
  PyObject* step_count;
  PyObject* base_lrs;
  PyObject* get_lr_called_within_step;
  PyObject* last_lr;
  PyObject* optimizer;
  PyObject* param_groups;
  PyObject* schedulers;
  PyObject* python_step;
  PyObject* milestones;
  PyObject* best;
  PyObject* mode;
  PyObject* threshold_mode;
  PyObject* threshold;
  PyObject* patience;
  PyObject* cooldown;
  PyObject* cooldown_counter;
  PyObject* num_bad_epochs;
  PyObject* factor;
  PyObject* eps;
  PyObject* min_lrs;
  PyObject* min;
  PyObject* max;
  PyObject* rel;
  PyObject* abs;
  PyObject* anneal_func_type;
  PyObject* total_steps;
  PyObject* cycle_momentum;
  PyObject* schedule_phases;
  PyObject* use_beta1;
  PyObject* cos;
  PyObject* linear;
  PyObject* anneal_func;
  PyObject* anneal_epochs;
  PyObject* eta_min;
  PyObject* t_cur;
  PyObject* t_i;
  PyObject* t_mult;
  PyObject* total_size;
  PyObject* scale_fn_custom;
  PyObject* scale_fn_ref;
  PyObject* scale_mode;
  PyObject* step_ratio;
  PyObject* max_lrs;
  PyObject* base_momentums;
  PyObject* max_momentums;
  PyObject* func;
  PyObject* args;
  PyObject* cycle;
  PyObject* step;
  PyObject* get_last_lr;
};
Names names;

// Storage for one value per group, owned by one call: on the stack for small group counts, on the
// heap beyond. Nothing is shared between calls, so a step re-entered from Python (a finalizer run by an
// allocation) cannot disturb a step in progress.
template <typename T>
class GroupBuffer {
 public:
  GroupBuffer() = default;
  explicit GroupBuffer(Py_ssize_t n) { allocate(n); }
  // Room for n values; false when the heap has none.
  bool allocate(Py_ssize_t n) {
    if (n > kInline) {
      heap_.reset(new (std::nothrow) T[n]);
      data_ = heap_.get();
    }
    return ok();
  }
  bool ok() const { return data_ != nullptr; }
  T* data() { return data_; }
  T& operator[](Py_ssize_t i) { return data_[i]; }

 private:
  static constexpr Py_ssize_t kInline = 32;
  T inline_[kInline];
  std::unique_ptr<T[]> heap_;
  T* data_ = inline_;
};

// An owned reference, released at the end of the scope.
class Ref {
 public:
  explicit Ref(PyObject* p) : p_(p) {}
  ~Ref() { Py_XDECREF(p_); }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  PyObject* get() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  PyObject* p_;
};

// Strong references a step keeps until it returns, to objects it read (from a dict, a list) and still
// uses after a point where Python code can run: a finalizer, a key's __eq__, a user's callable, the
// garbage collector, another thread taking the GIL. Borrowed, they could be freed or changed there.
class Held {
 public:
  Held() = default;
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  ~Held() {
    while (n_ > 0) Py_DECREF(refs_[--n_]);
  }
  // `p` (borrowed), now held; null stays null, and so does `p` when the holder is full.
  PyObject* hold(PyObject* p) {
    if (p == nullptr || n_ == kCapacity) return nullptr;
    Py_INCREF(p);
    refs_[n_++] = p;
    return p;
  }

 private:
  static constexpr int kCapacity = 16;
  PyObject* refs_[kCapacity];
  int n_ = 0;
};

PyObject* reference_path() { Py_RETURN_NONE; }

// Whether letting go of `v` runs no Python code: an exact float or int, or an exact tuple or list of
// them (a betas pair). Anything else may have a finalizer, or hold something that has one.
bool releases_quietly(PyObject* v) {
  if (PyFloat_CheckExact(v) || PyLong_CheckExact(v)) return true;
  if (!PyTuple_CheckExact(v) && !PyList_CheckExact(v)) return false;
  for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(v); ++k) {
    PyObject* item = PySequence_Fast_ITEMS(v)[k];
    if (!PyFloat_CheckExact(item) && !PyLong_CheckExact(item)) return false;
  }
  return true;
}

// A Python float or int as a double. Subclasses (numpy.float64, bool) are left to torch's code: its
// arithmetic on them returns their type, which a float written here would not match. So are ints of
// 2**53 and beyond, which a double cannot hold exactly (an epoch there: torch's `epoch % step_size`
// and comparisons are exact on Python ints).
bool read_real(PyObject* v, double* out) {
  if (PyFloat_CheckExact(v)) {
    *out = PyFloat_AS_DOUBLE(v);
    return true;
  }
  if (PyLong_CheckExact(v)) {
    const double d = PyLong_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    *out = d;
    return exact_int(d);
  }
  return false;
}

bool read_int64(PyObject* v, int64_t* out) {
  if (!PyLong_CheckExact(v)) return false;
  int overflow = 0;
  const long long value = PyLong_AsLongLongAndOverflow(v, &overflow);
  if (overflow != 0 || (value == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return false;
  }
  *out = value;
  return true;
}

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

// An attribute of a scheduler, or null (with no error set) when it has none.
PyObject* attribute(PyObject* obj, PyObject* name) {
  PyObject* v = PyObject_GetAttr(obj, name);
  if (v == nullptr) PyErr_Clear();
  return v;
}

// Stores a new reference with `store` (PyObject_SetAttr, PyDict_SetItem), consuming it; false (error
// set) on failure, a null `value` (its allocation failed) included.
bool store_new(int (*store)(PyObject*, PyObject*, PyObject*), PyObject* target, PyObject* key,
               PyObject* value) {
  if (value == nullptr) return false;
  const int rc = store(target, key, value);
  Py_DECREF(value);
  return rc == 0;
}

bool set_attr(PyObject* obj, PyObject* name, PyObject* value) {
  return store_new(PyObject_SetAttr, obj, name, value);
}

bool set_item(PyObject* dict, PyObject* key, PyObject* value) {
  return store_new(PyDict_SetItem, dict, key, value);
}

bool read_attr_int64(PyObject* obj, PyObject* name, int64_t* out) {
  Ref v(attribute(obj, name));
  return v && read_int64(v.get(), out);
}

PyObject* group_at(PyObject* groups, Py_ssize_t i) { return PyList_GET_ITEM(groups, i); }

// An item of a dict (a param group, a scheduler's __dict__) as a double (read_real), or false when it
// is missing or not a float or an int.
bool read_dict_real(PyObject* dict, PyObject* key, double* out) {
  PyObject* v = PyDict_GetItemWithError(dict, key);
  if (v == nullptr) {
    PyErr_Clear();
    return false;
  }
  return read_real(v, out);
}

bool read_dict_int64(PyObject* dict, PyObject* key, int64_t* out) {
  PyObject* v = PyDict_GetItemWithError(dict, key);
  return v != nullptr && read_int64(v, out);
}

// The items of `dict` under the given keys, each into its pointer, held by `held` (a later lookup can
// run a key's __eq__); false when one is missing.
bool dict_items(Held& held, PyObject* dict,
                std::initializer_list<std::pair<PyObject*, PyObject**>> items) {
  for (const auto& [key, out] : items)
    if ((*out = held.hold(PyDict_GetItemWithError(dict, key))) == nullptr) return false;
  return true;
}

// A per-group list the scheduler holds (base_lrs, max_lrs, ...), read at index i; false past its end
// (Python code run during the step may have shortened it).
bool read_list_real(PyObject* list, Py_ssize_t i, double* out) {
  return i < PyList_GET_SIZE(list) && read_real(PyList_GET_ITEM(list, i), out);
}

bool is_list_of_length(PyObject* list, Py_ssize_t n) {
  return list != nullptr && PyList_CheckExact(list) && PyList_GET_SIZE(list) == n;
}

bool has_betas_sequence(PyObject* group) {
  PyObject* betas = PyDict_GetItemWithError(group, names.betas);
  if (betas == nullptr) {
    PyErr_Clear();
    return false;
  }
  return PyTuple_CheckExact(betas) || PyList_CheckExact(betas);
}

PyObject* group_changed_error() {
  PyErr_SetString(PyExc_RuntimeError,
                  "schedx: the optimizer's param groups or a scheduler's state were changed while a "
                  "scheduler step was writing them");
  return nullptr;
}

// The object written as a group's momentum: a float, or `betas` with its first entry replaced,
// built as torch builds it: (momentum, *betas[1:]).
PyObject* new_momentum_object(PyObject* group, double momentum, bool use_beta1) {
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

// Sets the error being raised aside for the scope, and raises it again at its end.
class PendingError {
 public:
#if PY_VERSION_HEX >= 0x030C0000
  PendingError() : exc_(PyErr_GetRaisedException()) {}
  ~PendingError() { PyErr_SetRaisedException(exc_); }
#else
  PendingError() { PyErr_Fetch(&type_, &exc_, &traceback_); }
  ~PendingError() { PyErr_Restore(type_, exc_, traceback_); }
#endif
  PendingError(const PendingError&) = delete;
  PendingError& operator=(const PendingError&) = delete;

 private:
#if PY_VERSION_HEX < 0x030C0000
  PyObject* type_ = nullptr;
  PyObject* traceback_ = nullptr;
#endif
  PyObject* exc_ = nullptr;
};

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
PyObject* refillable_last_lr(const LastLrOwner& owner, Py_ssize_t n) {
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

// Whether a chained child's previous `_last_lr` (in `dict`; null: an unregistered child, stored
// through its attributes) lets go quietly when its step replaces it: torch lets go of it at the end of
// that child's own step, before the next child steps, where a fused chain is past every child's pass.
// A list of n items nobody else holds is refillable, and LastLrList checks its items itself.
bool last_lr_lets_go_quietly(PyObject* dict, Py_ssize_t n) {
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
PyObject* current_lrs(PyObject* groups, const LastLrOwner& refill = {}) {
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

// Applies one StepPlan to every group.
PyObject* apply_plan(PyObject* groups, PyObject* base_lrs, const StepPlan& plan,
                     const LastLrOwner& refill = {}) {
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

bool parse_kind(PyObject* obj, Kind* kind) {
  const long value = PyLong_AsLong(obj);
  if (value == -1 && PyErr_Occurred()) return false;
  if (value < 0 || value >= kNumKinds) {
    PyErr_Format(PyExc_ValueError, "schedx: unknown scheduler kind %ld", value);
    return false;
  }
  *kind = static_cast<Kind>(value);
  return true;
}

// recursive_step(kind, groups, base_lrs, last_epoch, step_count, is_initial, settings): the chainable
// get_lr() of a StepPlan scheduler. `settings` is a tuple of the values csrc/kinds.h lists for the
// kind, or the value itself when there is one.
PyObject* recursive_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("recursive_step", nargs, 7)) return nullptr;
  Kind kind;
  if (!parse_kind(args[0], &kind)) return nullptr;
  double epoch, h[kMaxSettings];
  unsigned ints;
  int64_t step_count;
  const int is_initial = PyObject_IsTrue(args[5]);
  if (is_initial < 0) return nullptr;
  if (!read_real(args[3], &epoch) || !read_int64(args[4], &step_count) ||
      !read_reals(args[6], h, &ints))
    return reference_path();
  return apply_plan(args[1], args[2],
                    with_python_types(plan_recursive_step(kind, epoch, step_count, is_initial, h),
                                      kind, false, ints));
}

// ---------------------------------------------------------------------------------------------------
// Whole steps: the plain step() of a registered class, run here from its counters to its `_last_lr`
// (StepPlan schedulers alone or as a composite's children, then the other classes further below).
// ---------------------------------------------------------------------------------------------------

constexpr Py_ssize_t kMaxChained = 8;

// Whether a str equals an interned name: by identity first (attribute values set from literals are
// interned too), then by value.
bool is_name(PyObject* s, PyObject* name) { return s == name || PyUnicode_Compare(s, name) == 0; }

// A plain step's answer when it cannot run: False (the Python step runs), or null when the reason is
// an error (a key's __eq__ raised, memory ran out).
PyObject* declined() {
  if (PyErr_Occurred()) return nullptr;
  Py_RETURN_FALSE;
}

// A class schedx/lr_scheduler.py registers (register_plain_class): its own StepPlan classes,
// composites and the others whose plain step runs here. Their instances keep every attribute a step
// reads or writes in their __dict__ (no property, no __setattr__ of their own), so their steps use
// that dict directly: through the attribute protocol, those reads and writes were most of a one-group
// step.
enum class PlainRole { StepPlan, Chain, Sequence, Plateau, OneCycle, Cyclic, Swa, WarmRestarts, Schedules };

struct PlainClass {
  PyTypeObject* type;
  PlainRole role;
  Kind kind;
  PyObject* setting_names;  // the attributes kinds.h lists for the kind, in that order
  // Per class (register_plain_class): MultiStepLR's Counter type, CyclicLR's built-in scale
  // functions, SWALR's anneal functions, the trace cache of LambdaLR & co.
  PyObject* extra;
  // The names of the methods torch's step calls on the scheduler (a tuple of str): one set on the
  // instance is what torch's step calls, so the Python step runs.
  PyObject* hooks;
};

constexpr int kMaxPlainClasses = 32;
PlainClass plain_classes[kMaxPlainClasses];
int n_plain_classes = 0;

// The registration of exactly this class (a user's subclass may add properties: it has none).
const PlainClass* plain_class_of(PyTypeObject* type) {
  for (int k = 0; k < n_plain_classes; ++k)
    if (plain_classes[k].type == type) return &plain_classes[k];
  return nullptr;
}

// Whether an instance overrides a method torch's step calls on it: one of `cls.hooks` in its dict,
// or, for a composite's child (`extra`: "step", and SequentialLR's "get_last_lr"), one of those.
// True also when a lookup raised (then declined() passes the error on).
bool has_instance_hook(const PlainClass& cls, PyObject* scheduler,
                       std::initializer_list<PyObject*> extra = {}) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return true;
  const Py_ssize_t n = PyTuple_GET_SIZE(cls.hooks);
  for (Py_ssize_t k = 0; k < n; ++k)
    if (PyDict_GetItemWithError(dict.get(), PyTuple_GET_ITEM(cls.hooks, k)) != nullptr) return true;
  for (PyObject* name : extra)
    if (PyDict_GetItemWithError(dict.get(), name) != nullptr) return true;
  return PyErr_Occurred() != nullptr;
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

// Whether the flag torch's get_lr() call leaves False (`_get_lr_called_within_step`) is a bool or
// absent. A step's record replaces it after the groups are written, where torch lets go of it before
// reading them: anything else (an object with a finalizer) is left to torch's code.
bool flag_lets_go_quietly(PyObject* dict) {
  PyObject* flag = PyDict_GetItemWithError(dict, names.get_lr_called_within_step);
  return flag == Py_False || flag == Py_True || (flag == nullptr && !PyErr_Occurred());
}

// Counters that stay exact in a double after the step's increment (2**53 and beyond are left to
// torch's code, which counts in Python ints).
bool exact_counters(int64_t last_epoch, int64_t step_count) {
  return exact_int(static_cast<double>(last_epoch) + 1.0) && exact_int(static_cast<double>(step_count) + 1.0);
}

// The counters of a scheduler whose plain step is torch's LRScheduler.step past its first (torch's
// warning check): exact ints that stay exact after the step's increment.
bool read_plain_counters(PyObject* dict, int64_t* last_epoch, int64_t* step_count) {
  return read_dict_int64(dict, names.last_epoch, last_epoch) &&
         read_dict_int64(dict, names.step_count, step_count) && *step_count != 1 &&
         exact_counters(*last_epoch, *step_count) && flag_lets_go_quietly(dict);
}

// Sets a scheduler's `_last_lr` to a step's list (held by the caller); a list the step refilled is
// already there, unless Python code run during the step put another in its place.
bool store_last_lr(PyObject* dict, PyObject* last_lr) {
  PyObject* current = PyDict_GetItemWithError(dict, names.last_lr);
  if (current == last_lr) return true;
  return !PyErr_Occurred() && PyDict_SetItem(dict, names.last_lr, last_lr) == 0;
}

// Records LRScheduler.step in a registered scheduler's dict: `_step_count` and `last_epoch`
// advanced (`new_epoch` is `last_epoch + 1`), the flag torch's get_lr() call leaves False, `_last_lr`.
bool record_plain_step(PyObject* dict, int64_t step_count, PyObject* new_epoch, PyObject* last_lr) {
  return set_item(dict, names.step_count, PyLong_FromLongLong(step_count + 1)) &&
         PyDict_SetItem(dict, names.get_lr_called_within_step, Py_False) == 0 &&
         PyDict_SetItem(dict, names.last_epoch, new_epoch) == 0 && store_last_lr(dict, last_lr);
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

// Advances a child of another class's counters as its plain step() does (its `_setting_values` may
// read the new epoch), then reads what its get_lr() reads. False (error cleared) as above.
bool advance_chained_stage(PyObject* child, ChainedStage* stage) {
  Ref kind_obj(attribute(child, names.kind));
  Ref settings_fn(attribute(child, names.setting_values));
  Ref is_initial_obj(attribute(child, names.is_initial));
  Kind kind;
  if (!kind_obj || !settings_fn || !is_initial_obj || !parse_kind(kind_obj.get(), &kind) ||
      !read_attr_int64(child, names.last_epoch, &stage->last_epoch) ||
      !read_attr_int64(child, names.step_count, &stage->step_count) ||
      !exact_counters(stage->last_epoch, stage->step_count) ||
      !set_counters(child, stage->last_epoch + 1, stage->step_count + 1)) {
    return false;
  }
  stage->advanced = true;
  const int is_initial = PyObject_IsTrue(is_initial_obj.get());
  Ref settings(PyObject_CallOneArg(settings_fn.get(), child));
  double h[kMaxSettings];
  unsigned ints;
  if (is_initial < 0 || !settings || !read_reals(settings.get(), h, &ints)) return false;
  stage->plan = with_python_types(plan_recursive_step(kind, static_cast<double>(stage->last_epoch + 1),
                                                      stage->step_count + 1, is_initial, h),
                                  kind, false, ints);
  if (!stage->plan.ok) return false;
  if (!rule_reads_base_lr(stage->plan.rule)) return true;
  stage->base_lrs = attribute(child, names.base_lrs);
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
  const bool ok = (cls != nullptr && cls->role == PlainRole::StepPlan
                       ? read_registered_stage(*cls, child, st)
                       : advance_chained_stage(child, st)) &&
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
  // The last child's list is the one write_groups fills; the others are filled here. Taken in order,
  // so that a child listed twice refills its list once at most (the second stage sees the first's
  // reference).
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

// The step of `n_stages` StepPlan schedulers over the same groups, in one visit per group
// (chain_pass_over_groups for more than one). A chain gives its `optimizer`, which every child must
// step (a single scheduler's groups are its own: null); a SequentialLR, its dict (`also_listed_by`, see
// refillable_last_lr). Every child's step is recorded (finish_stage); returns the last child's
// `_last_lr` (new reference), or None with nothing changed.
PyObject* step_stages(PyObject* groups, PyObject* optimizer, PyObject* const* children,
                      Py_ssize_t n_stages, PyObject* also_listed_by = nullptr) {
  if (!PyList_CheckExact(groups) || n_stages < 1 || n_stages > kMaxChained) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  ChainedStages stages;
  for (Py_ssize_t k = 0; k < n_stages; ++k) {
    ChainedStage& st = stages.stage[k];
    if (!read_chained_stage(children[k], optimizer, &st) ||
        (rule_reads_base_lr(st.plan.rule) && !is_list_of_length(st.base_lrs, n)))
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

// `optimizer.param_groups`, or null with the optimizer's error.
PyObject* param_groups_of(PyObject* optimizer) {
  return PyObject_GetAttr(optimizer, names.param_groups);
}

// A registered scheduler's `optimizer`, held by `held` (reading its param_groups can run Python code),
// or null: without an error when it has none (then declined(): Python's step raises torch's error).
PyObject* optimizer_of(Held& held, PyObject* dict) {
  return held.hold(PyDict_GetItemWithError(dict, names.optimizer));
}

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

// chained_step(optimizer, children): chain_pass, for ChainedScheduler's Python step.
PyObject* chained_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("chained_step", nargs, 2)) return nullptr;
  return chain_pass(args[0], args[1]);
}

// A registered ChainedScheduler's step when every child is a registered StepPlan scheduler: the
// children's steps in one pass, and the chain's own `_last_lr`. True; False with nothing changed.
PyObject* plain_chain_step(PyObject* chain) {
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
    if (cls == nullptr || cls->role != PlainRole::StepPlan) Py_RETURN_FALSE;
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
PyObject* plain_sequence_step(PyObject* sequence) {
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
  if (cls == nullptr || cls->role != PlainRole::StepPlan) Py_RETURN_FALSE;
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

// torch's CosineAnnealingWarmRestarts.step() without an epoch, past its first, with int T_cur, T_i
// and T_mult: the restart bookkeeping, then every group's LR from the closed form. (Its step never
// counts `_step_count`.) True; False with nothing changed.
PyObject* plain_warm_restarts_step(PyObject* scheduler) {
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

// With the code of each class below.
PyObject* plain_plateau_step(PyObject* scheduler, PyObject* metrics);
PyObject* plain_counted_step(const PlainClass& cls, PyObject* scheduler);
PyObject* plain_schedule_step(const PlainClass& cls, PyObject* scheduler);

// The whole plain step() of a scheduler of a registered class: counters advanced, every group's LR
// written, `_last_lr` set; True. False, with nothing changed, for anything its Python step must do
// (another class, its first step, counters that are not ints, LRs that are not floats, ...).
PyObject* plain_step(PyObject* scheduler, PyObject* const* args, Py_ssize_t nargs) {
  const PlainClass* cls = plain_class_of(Py_TYPE(scheduler));
  if (cls == nullptr || nargs != (cls->role == PlainRole::Plateau ? 1 : 0)) Py_RETURN_FALSE;
  if (PyTuple_GET_SIZE(cls->hooks) > 0 && has_instance_hook(*cls, scheduler)) return declined();
  if (cls->role == PlainRole::Plateau) return plain_plateau_step(scheduler, args[0]);
  if (cls->role == PlainRole::Chain) return plain_chain_step(scheduler);
  if (cls->role == PlainRole::Sequence) return plain_sequence_step(scheduler);
  if (cls->role == PlainRole::OneCycle || cls->role == PlainRole::Cyclic || cls->role == PlainRole::Swa)
    return plain_counted_step(*cls, scheduler);
  if (cls->role == PlainRole::WarmRestarts) return plain_warm_restarts_step(scheduler);
  if (cls->role == PlainRole::Schedules) return plain_schedule_step(*cls, scheduler);
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  Held held;
  PyObject* optimizer = dict ? optimizer_of(held, dict.get()) : nullptr;
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return declined();
  Ref last(step_stages(groups.get(), nullptr, &scheduler, 1));
  if (!last) return nullptr;
  return PyBool_FromLong(last.get() != Py_None);
}

// step(self, *args, **kwargs): the `step` of the registered classes (an instancemethod:
// `step_method`, `chain_step_method` or `plateau_step_method`), so that a plain step runs no Python
// frame at all (at one group, the frame cost as much as the rest of the step). Anything but a plain
// step of a registered class runs the class's Python `_python_step` with the same arguments.
PyObject* fused_step(PyObject*, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 1) {
    PyErr_SetString(PyExc_TypeError, "step() needs the scheduler");
    return nullptr;
  }
  if (kwnames == nullptr) {
    Ref done(plain_step(args[0], args + 1, nargs - 1));
    if (!done) return nullptr;
    if (done.get() == Py_True) Py_RETURN_NONE;
  }
  return PyObject_VectorcallMethod(names.python_step, args, nargsf, kwnames);
}

// register_plain_class(cls, kind, setting_names, extra, hooks): instances of exactly `cls` step through
// plain_step. A StepPlan class gives its kind and the attributes kinds.h lists for it (and MultiStepLR
// its milestones' Counter type as `extra`); the others give their role ("chain", "sequence",
// "plateau", "one_cycle", "cyclic", "swa", "warm_restarts", "schedules"), (), and None, except
// CyclicLR: torch's (triangular, triangular2, exp_range) scale functions and functools.partial;
// SWALR: its (cosine, linear) anneal functions; LambdaLR, MultiplicativeLR and ScheduleLR: (the attribute
// holding their callables,) and (the cache of their programs, factors only?, from the base LR?).
// `hooks`: the names of the methods torch's step calls on an instance (PlainClass::hooks).
PyObject* register_plain_class(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("register_plain_class", nargs, 5)) return nullptr;
  static const struct {
    const char* name;
    PlainRole role;
  } roles[] = {{"chain", PlainRole::Chain}, {"sequence", PlainRole::Sequence},
               {"plateau", PlainRole::Plateau}, {"one_cycle", PlainRole::OneCycle},
               {"cyclic", PlainRole::Cyclic}, {"swa", PlainRole::Swa},
               {"warm_restarts", PlainRole::WarmRestarts}, {"schedules", PlainRole::Schedules}};
  PlainClass entry{nullptr, PlainRole::StepPlan, Kind::StepLR, args[2], args[3], args[4]};
  if (PyUnicode_Check(args[1])) {
    bool known = false;
    for (const auto& r : roles)
      if (PyUnicode_CompareWithASCIIString(args[1], r.name) == 0) {
        entry.role = r.role;
        known = true;
      }
    if (!known) {
      PyErr_SetString(PyExc_ValueError, "schedx: register_plain_class: unknown role");
      return nullptr;
    }
  } else if (!parse_kind(args[1], &entry.kind)) {
    return nullptr;
  }
  auto is_tuple_of = [&](Py_ssize_t size) {
    return PyTuple_CheckExact(args[3]) && PyTuple_GET_SIZE(args[3]) == size;
  };
  bool hooks_ok = PyTuple_CheckExact(args[4]);
  for (Py_ssize_t k = 0; hooks_ok && k < PyTuple_GET_SIZE(args[4]); ++k)
    hooks_ok = PyUnicode_CheckExact(PyTuple_GET_ITEM(args[4], k));
  if (!hooks_ok || !PyType_Check(args[0]) || !PyTuple_CheckExact(args[2]) ||
      PyTuple_GET_SIZE(args[2]) > kMaxSettings ||
      (entry.role == PlainRole::Swa && !is_tuple_of(2)) ||
      (entry.role == PlainRole::Cyclic && (!is_tuple_of(4) || !PyType_Check(PyTuple_GET_ITEM(args[3], 3)))) ||
      (entry.role == PlainRole::Schedules &&
       (!is_tuple_of(3) || Py_TYPE(PyTuple_GET_ITEM(args[3], 0)) != &PyMemberDescr_Type ||
        PyTuple_GET_SIZE(args[2]) != 1)) ||
      (entry.role == PlainRole::StepPlan && entry.kind == Kind::MultiStepLR && !PyType_Check(args[3]))) {
    PyErr_SetString(PyExc_TypeError,
                    "schedx: register_plain_class(type, kind | role, tuple of names, extra, "
                    "tuple of hook names)");
    return nullptr;
  }
  if (plain_class_of(reinterpret_cast<PyTypeObject*>(args[0])) != nullptr) Py_RETURN_NONE;
  if (n_plain_classes == kMaxPlainClasses) {
    PyErr_SetString(PyExc_RuntimeError, "schedx: too many plain-step classes");
    return nullptr;
  }
  entry.type = reinterpret_cast<PyTypeObject*>(args[0]);
  // Kept for the life of the process.
  Py_INCREF(args[0]);
  Py_INCREF(args[2]);
  Py_INCREF(args[3]);
  Py_INCREF(args[4]);
  plain_classes[n_plain_classes++] = entry;
  Py_RETURN_NONE;
}

// closed_form_step(kind, groups, base_lrs, last_epoch, settings): _get_closed_form_lr().
PyObject* closed_form_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("closed_form_step", nargs, 5)) return nullptr;
  Kind kind;
  if (!parse_kind(args[0], &kind)) return nullptr;
  double epoch, h[kMaxSettings];
  unsigned ints;
  if (!read_real(args[3], &epoch) || !read_reals(args[4], h, &ints)) return reference_path();
  return apply_plan(args[1], args[2],
                    with_python_types(plan_closed_form_step(kind, epoch, h), kind, true, ints));
}

// scale_by_factors(groups, base_lrs, factors, from_base): LambdaLR (base_lr * factor) and
// MultiplicativeLR (lr * factor), with the factors the user's lambdas returned.
PyObject* scale_by_factors(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("scale_by_factors", nargs, 4)) return nullptr;
  PyObject* groups = args[0];
  PyObject* base_lrs = args[1];
  PyObject* factors = args[2];
  const int from_base = PyObject_IsTrue(args[3]);
  if (from_base < 0) return nullptr;
  if (!PyList_CheckExact(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  if (!is_list_of_length(factors, n) || (from_base && !is_list_of_length(base_lrs, n)))
    return reference_path();
  return write_groups(groups, MomentumKey::None,
                      [&](Py_ssize_t i, PyObject*, double lr, GroupResult* r) {
                        double start = lr, factor;
                        if (from_base && !read_list_real(base_lrs, i, &start)) return false;
                        if (!read_list_real(factors, i, &factor)) return false;
                        // An int base LR times an int factor is an int in torch.
                        if (from_base && PyLong_CheckExact(PyList_GET_ITEM(base_lrs, i)) &&
                            PyLong_CheckExact(PyList_GET_ITEM(factors, i)))
                          return false;
                        r->lr = start * factor;
                        return true;
                      });
}

// A compiled schedule (schedx/schedules.py), as the Python layer hands it over: a tuple
// (code: bytes of int32 (op, arg) pairs, consts: bytes of doubles, absolute: bool). An absolute
// schedule's value is the LR itself; any other's is a factor of the group's initial LR.
struct ScheduleProgram {
  ExprCode code;
  bool absolute;
};

bool read_schedule_program(PyObject* obj, ScheduleProgram* out) {
  if (!PyTuple_CheckExact(obj) || PyTuple_GET_SIZE(obj) != 3) return false;
  PyObject* code = PyTuple_GET_ITEM(obj, 0);
  PyObject* consts = PyTuple_GET_ITEM(obj, 1);
  if (!PyBytes_CheckExact(code) || !PyBytes_CheckExact(consts) ||
      PyBytes_GET_SIZE(code) % (2 * sizeof(int32_t)) != 0 ||
      PyBytes_GET_SIZE(consts) % sizeof(double) != 0)
    return false;
  const Py_ssize_t n_instructions = PyBytes_GET_SIZE(code) / (2 * sizeof(int32_t));
  if (n_instructions > kMaxExprInstructions) return false;
  out->code.code = reinterpret_cast<const int32_t*>(PyBytes_AS_STRING(code));
  out->code.n_instructions = static_cast<int32_t>(n_instructions);
  out->code.consts = reinterpret_cast<const double*>(PyBytes_AS_STRING(consts));
  out->code.n_consts = static_cast<int32_t>(PyBytes_GET_SIZE(consts) / sizeof(double));
  out->absolute = PyTuple_GET_ITEM(obj, 2) == Py_True;
  return true;
}

// The LR a schedule gives a group at `step`: its value (absolute) or `base_lr * value`, as LambdaLR
// multiplies.
bool schedule_lr(const ScheduleProgram& program, int64_t step, double base_lr, double* lr) {
  PyNum value;
  if (!eval_expr(program.code, step, base_lr, &value)) return false;
  *lr = program.absolute ? value.v : base_lr * value.v;
  return true;
}

// LambdaLR's get_lr() with compiled lambdas (`base_lr * factor`) or ScheduleLR's, one program per
// group; without from_base, MultiplicativeLR's (`lr * factor`). A factor is computed once for the
// groups that share a program.
PyObject* schedule_pass(PyObject* groups, PyObject* base_lrs, PyObject* programs, int64_t epoch,
                        bool from_base, const LastLrOwner& refill = {}) {
  if (!PyList_CheckExact(groups)) return reference_path();
  const Py_ssize_t n = PyList_GET_SIZE(groups);
  if ((from_base && !is_list_of_length(base_lrs, n)) || !PyTuple_CheckExact(programs) ||
      PyTuple_GET_SIZE(programs) != n)
    return reference_path();
  PyObject* shared = nullptr;  // the program whose factor is `shared_factor`
  PyNum shared_factor{0.0, false};
  return write_groups(groups, MomentumKey::None,
                      [&](Py_ssize_t i, PyObject*, double lr, GroupResult* r) {
                        double start = lr;
                        ScheduleProgram program;
                        PyObject* obj = PyTuple_GET_ITEM(programs, i);
                        if ((from_base && !read_list_real(base_lrs, i, &start)) ||
                            !read_schedule_program(obj, &program) || (program.absolute && !from_base))
                          return false;
                        // Where Python's value is an int (an int factor times an int base LR, an
                        // absolute schedule's int), or reads an int base LR the program takes as a
                        // float, Python's code gives it.
                        const bool int_base = from_base && PyLong_CheckExact(PyList_GET_ITEM(base_lrs, i));
                        if (program.absolute) {
                          PyNum value;
                          if (int_base || !eval_expr(program.code, epoch, start, &value) || value.is_int)
                            return false;
                          r->lr = value.v;
                          return true;
                        }
                        if (obj != shared) {
                          if (!eval_expr(program.code, epoch, start, &shared_factor)) return false;
                          shared = obj;
                        }
                        if (int_base && shared_factor.is_int) return false;
                        r->lr = start * shared_factor.v;
                        return true;
                      },
                      refill);
}

// schedule_step(groups, base_lrs, programs, epoch, from_base): schedule_pass.
PyObject* schedule_step(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("schedule_step", nargs, 5)) return nullptr;
  const int from_base = PyObject_IsTrue(args[4]);
  if (from_base < 0) return nullptr;
  int64_t epoch;
  if (!read_int64(args[3], &epoch)) return reference_path();
  return schedule_pass(args[0], args[1], args[2], epoch, from_base);
}

// A guard of schedules.py's trace: (where, key, value), or (where, key) where the trace found nothing.
// It holds while `where` still gives the very object the trace read: the item `key` of a dict, the
// attribute `key` of a function or partial, the contents of a cell (key None), or for a tuple of keys,
// exactly those keys of a dict, bound to the objects of the tuple `value`. No Python code runs.
bool guard_holds(PyObject* guard) {
  if (!PyTuple_CheckExact(guard) || PyTuple_GET_SIZE(guard) < 2 || PyTuple_GET_SIZE(guard) > 3)
    return false;
  PyObject* where = PyTuple_GET_ITEM(guard, 0);
  PyObject* key = PyTuple_GET_ITEM(guard, 1);
  PyObject* expected = PyTuple_GET_SIZE(guard) == 3 ? PyTuple_GET_ITEM(guard, 2) : nullptr;
  if (key == Py_None) return PyCell_Check(where) && PyCell_GET(where) == expected;
  if (PyTuple_CheckExact(key)) {
    if (!PyDict_CheckExact(where) || expected == nullptr || !PyTuple_CheckExact(expected) ||
        PyTuple_GET_SIZE(expected) != PyTuple_GET_SIZE(key) ||
        PyDict_GET_SIZE(where) != PyTuple_GET_SIZE(key))
      return false;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key); ++i)
      if (PyDict_GetItemWithError(where, PyTuple_GET_ITEM(key, i)) != PyTuple_GET_ITEM(expected, i))
        return false;
    return true;
  }
  if (!PyUnicode_CheckExact(key)) return false;
  if (PyDict_CheckExact(where)) return PyDict_GetItemWithError(where, key) == expected;
  if (PyFunction_Check(where)) {  // the attributes a trace guards, without a lookup (None: unset)
    PyObject* found = nullptr;
    if (PyUnicode_CompareWithASCIIString(key, "__code__") == 0) found = PyFunction_GET_CODE(where);
    else if (PyUnicode_CompareWithASCIIString(key, "__defaults__") == 0) found = PyFunction_GET_DEFAULTS(where);
    else if (PyUnicode_CompareWithASCIIString(key, "__kwdefaults__") == 0) found = PyFunction_GET_KW_DEFAULTS(where);
    else return false;
    return (found ? found : Py_None) == expected;
  }
  Ref found(PyObject_GetAttr(where, key));
  return found && found.get() == expected;
}

bool all_guards_hold(PyObject* guards) {
  if (!PyTuple_CheckExact(guards)) return false;
  for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(guards); ++k)
    if (!guard_holds(PyTuple_GET_ITEM(guards, k))) return false;
  return true;
}

// guards_hold(guards): whether every guard of a trace holds (schedules.py's guards_hold).
PyObject* guards_hold(PyObject*, PyObject* guards) {
  const bool hold = all_guards_hold(guards);
  PyErr_Clear();  // a lookup that raised: the guard does not hold
  return PyBool_FromLong(hold);
}

// Whether `refs` (a _CompiledSchedules' weak references) refer to the items of the list `callables`,
// in order. Only addresses are compared: nothing is dereferenced.
bool refers_to_each(PyObject* refs, PyObject* callables) {
  if (!PyTuple_CheckExact(refs) || !PyList_CheckExact(callables) ||
      PyTuple_GET_SIZE(refs) != PyList_GET_SIZE(callables))
    return false;
  for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(refs); ++k) {
    PyObject* ref = PyTuple_GET_ITEM(refs, k);
    if (!PyWeakref_CheckRefExact(ref)) return false;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject* target = nullptr;
    if (PyWeakref_GetRef(ref, &target) < 0) return false;
    Py_XDECREF(target);  // alive: the list holds it
#else
    PyObject* target = PyWeakref_GET_OBJECT(ref);
#endif
    if (target != PyList_GET_ITEM(callables, k)) return false;
  }
  return true;
}

// same_callables(refs, callables): refers_to_each, for the Python layer's cache check.
PyObject* same_callables(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("same_callables", nargs, 2)) return nullptr;
  const bool same = refers_to_each(args[0], args[1]);
  PyErr_Clear();
  return PyBool_FromLong(same);
}

// The object in `obj`'s slot `slot` (a member descriptor), borrowed; null where `obj` has no such
// slot or it is unset. Read as the descriptor reads it, without running Python code.
PyObject* slot_value(PyObject* slot, PyObject* obj) {
  if (Py_TYPE(slot) != &PyMemberDescr_Type) return nullptr;
  auto* member = reinterpret_cast<PyMemberDescrObject*>(slot);
  if (member->d_member->type != T_OBJECT_EX || !PyObject_TypeCheck(obj, PyDescr_TYPE(member)))
    return nullptr;
  return *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(obj) + member->d_member->offset);
}

// The programs of a registered LambdaLR's, MultiplicativeLR's or ScheduleLR's callables (the list
// in its dict under `cls.setting_names[0]`) from the Python layer's cache (its `_compiled` slot,
// whose descriptor is `cls.extra[0]`), as lr_scheduler.py's _compiled_schedules gives them when its
// entry is still valid; null without an error when there is none (not traced yet, a
// lambda that cannot be traced, a guard that no longer holds, an LR schedule where a factor is
// due): the Python step then traces again or calls the lambdas.
PyObject* cached_programs(const PlainClass& cls, PyObject* scheduler, PyObject* dict) {
  Held held;
  PyObject* callables =
      held.hold(PyDict_GetItemWithError(dict, PyTuple_GET_ITEM(cls.setting_names, 0)));
  PyObject* entry = slot_value(PyTuple_GET_ITEM(cls.extra, 0), scheduler);
  // The entry is a _CompiledSchedules: (weak references to the callables, programs, guards,
  // gives_lrs, retraces, exact_on_device).
  if (callables == nullptr || entry == nullptr || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 6)
    return nullptr;
  held.hold(entry);
  PyObject* programs = PyTuple_GET_ITEM(entry, 1);
  PyObject* guards = PyTuple_GET_ITEM(entry, 2);
  const bool factors_only = PyTuple_GET_ITEM(cls.extra, 1) == Py_True;
  // lr_scheduler.py's _same_objects: the same callables, by identity (no __eq__ runs).
  if (programs == Py_None || (factors_only && PyTuple_GET_ITEM(entry, 3) != Py_False) ||
      !refers_to_each(PyTuple_GET_ITEM(entry, 0), callables))
    return nullptr;
  if (!all_guards_hold(guards)) return nullptr;
  Py_INCREF(programs);
  return programs;
}

// A registered LambdaLR's, MultiplicativeLR's or ScheduleLR's plain step with its callables traced:
// torch's LRScheduler.step with schedule_pass as get_lr(). True; False with nothing changed.
PyObject* plain_schedule_step(const PlainClass& cls, PyObject* scheduler) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return nullptr;
  PyObject* d = dict.get();
  const bool from_base = PyTuple_GET_ITEM(cls.extra, 2) == Py_True;
  int64_t last_epoch, step_count;
  if (!read_plain_counters(d, &last_epoch, &step_count)) return declined();
  // MultiplicativeLR's construction step keeps the LRs; absent, `_is_initial` is the class's False.
  PyObject* is_initial = PyDict_GetItemWithError(d, names.is_initial);
  if (!from_base && is_initial != nullptr && is_initial != Py_False) return declined();
  Held held;
  PyObject* base_lrs = from_base ? held.hold(PyDict_GetItemWithError(d, names.base_lrs)) : Py_None;
  Ref programs(base_lrs ? cached_programs(cls, scheduler, d) : nullptr);
  PyErr_Clear();  // whatever the Python step would raise there, it raises itself
  PyObject* optimizer = programs ? optimizer_of(held, d) : nullptr;
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return declined();
  Ref last_lr(schedule_pass(groups.get(), base_lrs, programs.get(), last_epoch + 1, from_base,
                            LastLrOwner{d}));
  if (!last_lr) return nullptr;
  if (last_lr.get() == Py_None) Py_RETURN_FALSE;
  Ref new_epoch(PyLong_FromLongLong(last_epoch + 1));
  if (!new_epoch || !record_plain_step(d, step_count, new_epoch.get(), last_lr.get()))
    return nullptr;
  Py_RETURN_TRUE;
}

// eval_schedule(program, step, base_lr): the program's value as a Python int or float, or None where
// Python would raise (or an int leaves the exact range).
PyObject* eval_schedule(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("eval_schedule", nargs, 3)) return nullptr;
  ScheduleProgram program;
  int64_t step;
  double base_lr;
  if (!read_schedule_program(args[0], &program) || !read_int64(args[1], &step) ||
      !read_real(args[2], &base_lr)) {
    PyErr_SetString(PyExc_TypeError, "schedx: eval_schedule(program, int step, float base_lr)");
    return nullptr;
  }
  PyNum value;
  if (!eval_expr(program.code, step, base_lr, &value)) Py_RETURN_NONE;
  return value.is_int ? PyLong_FromDouble(value.v) : PyFloat_FromDouble(value.v);
}

// record_schedule(program, steps, base_lr, out): the LR a group with initial LR `base_lr` has at steps
// 0 .. steps - 1, into the float64 array at address `out`; returns how many steps succeeded (the curve
// stops where Python would raise). A custom schedule's curve in one call (schedx/plot.py).
PyObject* record_schedule(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("record_schedule", nargs, 4)) return nullptr;
  ScheduleProgram program;
  int64_t steps, address;
  double base_lr;
  if (!read_schedule_program(args[0], &program) || !read_int64(args[1], &steps) ||
      !read_real(args[2], &base_lr) || !read_int64(args[3], &address) || address == 0) {
    PyErr_SetString(PyExc_TypeError,
                    "schedx: record_schedule(program, int steps, float base_lr, int address)");
    return nullptr;
  }
  double* out = reinterpret_cast<double*>(static_cast<intptr_t>(address));
  int64_t t = 0;
  while (t < steps && schedule_lr(program, t, base_lr, &out[t])) ++t;
  return PyLong_FromLongLong(t);
}

// collect_lrs(groups): torch's `_param_groups_val_list(optimizer, "lr")` for float LRs.
PyObject* collect_lrs(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("collect_lrs", nargs, 1)) return nullptr;
  return current_lrs(args[0]);
}

MomentumKey momentum_key_of(bool cycle_momentum, bool use_beta1) {
  if (!cycle_momentum) return MomentumKey::None;
  return use_beta1 ? MomentumKey::Beta1 : MomentumKey::Momentum;
}

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

// CyclicLR's `_scale_fn_ref` as one of torch's built-in scale functions: its mode and exp_range's
// gamma; false for anything else (a custom function; an int gamma, whose `gamma ** x` is an exact int
// that torch's code computes). `functions`: torch's triangular, triangular2 and exp_range functions
// and the functools.partial type exp_range is bound with (lr_scheduler.py's _CYCLIC_SCALE_FUNCTIONS).
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
  if (!PyTuple_CheckExact(args[1]) || PyTuple_GET_SIZE(args[1]) != 4) {
    PyErr_SetString(PyExc_TypeError, "schedx: cyclic_builtin_scale(ref, (triangular, triangular2, exp_range, partial))");
    return nullptr;
  }
  CyclicMode mode;
  double gamma;
  if (!builtin_cyclic_scale(args[0], args[1], &mode, &gamma)) return Py_BuildValue("(id)", -1, 0.0);
  return Py_BuildValue("(id)", static_cast<int>(mode), gamma);
}

// CyclicLR's inputs from its dict at `epoch`, for a built-in scale function (lr_scheduler.py's
// _builtin_scale: `functions` are torch's (triangular, triangular2, exp_range) and the
// functools.partial type exp_range is bound with); false for a custom scale_fn, or anything torch's
// code must judge.
bool read_cyclic_inputs(Held& held, PyObject* dict, PyObject* functions, CyclicInputs* in) {
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

// A family's get_lr() at the scheduler's current `last_epoch` (its Python step has advanced it), its
// inputs read from its dict as the engine's plain step reads them: `read(held, dict, epoch)` is true
// when the engine can take them, `pass(groups)` writes the groups. None for torch's code.
template <typename Read, typename Pass>
PyObject* get_lr_from_dict(PyObject* scheduler, Read&& read, Pass&& pass) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return nullptr;
  Held held;
  double epoch;
  PyObject* optimizer = nullptr;
  if (read_dict_real(dict.get(), names.last_epoch, &epoch) && read(held, dict.get(), epoch))
    optimizer = optimizer_of(held, dict.get());
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return PyErr_Occurred() ? nullptr : reference_path();
  return pass(groups.get());
}

// cyclic_get_lr(scheduler, functions): CyclicLR's _fused_lr(); `functions` as read_cyclic_inputs
// takes them.
PyObject* cyclic_get_lr(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("cyclic_get_lr", nargs, 2)) return nullptr;
  if (!PyTuple_CheckExact(args[1]) || PyTuple_GET_SIZE(args[1]) != 4) return reference_path();
  CyclicInputs in;
  return get_lr_from_dict(
      args[0],
      [&](Held& held, PyObject* dict, double epoch) {
        in.epoch = epoch;
        return read_cyclic_inputs(held, dict, args[1], &in);
      },
      [&](PyObject* groups) { return cyclic_pass(groups, in); });
}

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
      [&](Held& held, PyObject* dict, double epoch) { return read_one_cycle_inputs(held, dict, epoch, &in); },
      [&](PyObject* groups) { return one_cycle_pass(groups, in); });
}

// SWALR's get_lr() at `step_count` (after the step's increment), written to the groups.
PyObject* swa_pass(PyObject* groups, int64_t step_count, double anneal_epochs, bool cosine,
                   const LastLrOwner& refill = {}) {
  const SwaAlphas alphas = swa_alphas(step_count, anneal_epochs, cosine);
  return write_groups(groups, MomentumKey::None,
                      [&](Py_ssize_t, PyObject* group, double lr, GroupResult* r) {
                        // An int swa_lr is left to torch's code: with the linear anneal's int
                        // alphas (0 and 1), its LR stays that int.
                        PyObject* target = PyDict_GetItemWithError(group, names.swa_lr);
                        if (target == nullptr || !PyFloat_CheckExact(target)) return false;
                        r->lr = swa_lr(lr, PyFloat_AS_DOUBLE(target), alphas);
                        return true;
                      },
                      refill);
}

// What SWALR's get_lr() reads besides the groups and the step count.
struct SwaInputs {
  double anneal_epochs;
  bool cosine;
};

// SWALR's inputs from its dict: false for an anneal function other than torch's two (`functions`,
// the registered (cosine, linear)).
bool read_swa_inputs(PyObject* dict, PyObject* functions, SwaInputs* in) {
  PyObject* anneal_func = PyDict_GetItemWithError(dict, names.anneal_func);
  in->cosine = anneal_func == PyTuple_GET_ITEM(functions, 0);
  return read_dict_real(dict, names.anneal_epochs, &in->anneal_epochs) &&
         (in->cosine || anneal_func == PyTuple_GET_ITEM(functions, 1));
}

// swa_get_lr(scheduler, functions): SWALR's _fused_lr(); `functions` as read_swa_inputs takes them.
PyObject* swa_get_lr(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("swa_get_lr", nargs, 2)) return nullptr;
  if (!PyTuple_CheckExact(args[1]) || PyTuple_GET_SIZE(args[1]) != 2) return reference_path();
  SwaInputs in;
  int64_t step_count;
  return get_lr_from_dict(
      args[0],
      [&](Held&, PyObject* dict, double) {
        return read_swa_inputs(dict, args[1], &in) && read_dict_int64(dict, names.step_count, &step_count);
      },
      [&](PyObject* groups) { return swa_pass(groups, step_count, in.anneal_epochs, in.cosine); });
}

// A registered OneCycleLR's, CyclicLR's or SWALR's plain step: torch's LRScheduler.step past its
// first, with the class's get_lr() (one_cycle_pass, cyclic_pass, swa_pass) as its compute. True;
// False with nothing changed (a custom scale or anneal function, inputs _fused_lr() leaves to torch's
// code).
PyObject* plain_counted_step(const PlainClass& cls, PyObject* scheduler) {
  Ref dict(PyObject_GenericGetDict(scheduler, nullptr));
  if (!dict) return nullptr;
  PyObject* d = dict.get();
  int64_t last_epoch, step_count;
  if (!read_plain_counters(d, &last_epoch, &step_count)) return declined();
  Ref new_epoch(PyLong_FromLongLong(last_epoch + 1));
  if (!new_epoch) return nullptr;
  OneCycleInputs one_cycle;
  CyclicInputs cyclic;
  SwaInputs swa;
  Held held;
  const bool ready =
      cls.role == PlainRole::OneCycle ? read_one_cycle_inputs(held, d, static_cast<double>(last_epoch + 1), &one_cycle)
      : cls.role == PlainRole::Cyclic
          ? read_cyclic_inputs(held, d, cls.extra, &cyclic)
          : read_swa_inputs(d, cls.extra, &swa);
  PyObject* optimizer = ready ? optimizer_of(held, d) : nullptr;
  Ref groups(optimizer ? param_groups_of(optimizer) : nullptr);
  if (!groups) return declined();
  cyclic.epoch = static_cast<double>(last_epoch + 1);
  const LastLrOwner refill{d};
  Ref last_lr(cls.role == PlainRole::OneCycle ? one_cycle_pass(groups.get(), one_cycle, refill)
              : cls.role == PlainRole::Cyclic
                  ? cyclic_pass(groups.get(), cyclic, refill)
                  : swa_pass(groups.get(), step_count + 1, swa.anneal_epochs, swa.cosine, refill));
  if (!last_lr) return nullptr;
  if (last_lr.get() == Py_None) Py_RETURN_FALSE;
  if (!record_plain_step(d, step_count, new_epoch.get(), last_lr.get())) return nullptr;
  Py_RETURN_TRUE;
}

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
PyObject* plain_plateau_step(PyObject* scheduler, PyObject* metrics) {
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

PyMethodDef methods[] = {
    {"recursive_step", SCHEDX_FASTCALL(recursive_step), METH_FASTCALL,
     "The chainable get_lr() of a StepPlan scheduler, applied to every group."},
    {"closed_form_step", SCHEDX_FASTCALL(closed_form_step), METH_FASTCALL,
     "The _get_closed_form_lr() of a StepPlan scheduler, applied to every group."},
    {"chained_step", SCHEDX_FASTCALL(chained_step), METH_FASTCALL,
     "ChainedScheduler.step over StepPlan children, in one visit per group."},
    {"register_plain_class", SCHEDX_FASTCALL(register_plain_class), METH_FASTCALL,
     "Registers a class whose instances' plain steps run in plain_step."},
    {"scale_by_factors", SCHEDX_FASTCALL(scale_by_factors), METH_FASTCALL,
     "LambdaLR / MultiplicativeLR arithmetic with the factors the lambdas returned."},
    {"cyclic_get_lr", SCHEDX_FASTCALL(cyclic_get_lr), METH_FASTCALL,
     "CyclicLR's get_lr() at its current last_epoch, momentum included, read from its dict."},
    {"one_cycle_get_lr", one_cycle_get_lr, METH_O,
     "OneCycleLR's get_lr() at its current last_epoch, momentum included, read from its dict."},
    {"swa_get_lr", SCHEDX_FASTCALL(swa_get_lr), METH_FASTCALL,
     "SWALR's get_lr() at its current step count, read from its dict."},
    {"plateau_get_lr", SCHEDX_FASTCALL(plateau_get_lr), METH_FASTCALL,
     "ReduceLROnPlateau's bookkeeping and reduction, read from its dict."},
    {"plateau_criterion", SCHEDX_FASTCALL(plateau_criterion), METH_FASTCALL,
     "torch's _is_better dispatch, as formulas.h's PlateauCriterion."},
    {"schedule_step", SCHEDX_FASTCALL(schedule_step), METH_FASTCALL,
     "LambdaLR / ScheduleLR with compiled schedules, one per group."},
    {"guards_hold", guards_hold, METH_O, "Whether every guard of a traced lambda holds."},
    {"same_callables", SCHEDX_FASTCALL(same_callables), METH_FASTCALL,
     "Whether weak references refer to a list's items, in order."},
    {"cyclic_builtin_scale", SCHEDX_FASTCALL(cyclic_builtin_scale), METH_FASTCALL,
     "CyclicLR's built-in scale function as (mode, gamma), or (-1, 0.0)."},
    {"eval_schedule", SCHEDX_FASTCALL(eval_schedule), METH_FASTCALL,
     "A compiled schedule's value at one step."},
    {"record_schedule", SCHEDX_FASTCALL(record_schedule), METH_FASTCALL,
     "A compiled schedule's LR over many steps, into a float64 array."},
    {"collect_lrs", SCHEDX_FASTCALL(collect_lrs), METH_FASTCALL,
     "Every group's current lr, as torch's _param_groups_val_list."},
    {"make_program", SCHEDX_FASTCALL(make_program), METH_FASTCALL,
     "A tensor-LR program over the given arrays, as a capsule."},
    {"run_program", SCHEDX_FASTCALL(run_program), METH_FASTCALL,
     "One step of a tensor-LR program over CPU tensors."},
    {"record_program", SCHEDX_FASTCALL(record_program), METH_FASTCALL,
     "Many steps of a tensor-LR program over CPU tensors, recording group 0's values."},
    {"device_cos", device_cos, METH_O, "The CUDA kernel's cos (csrc/dd_math.h), on the host."},
    {"device_pow", SCHEDX_FASTCALL(device_pow), METH_FASTCALL,
     "The CUDA kernel's pow (csrc/dd_math.h), on the host."},
    {"constants", constants, METH_NOARGS,
     "The numbers the Python layer shares with the engine: {table: {name: value}}."},
    {nullptr, nullptr, 0, nullptr},
};

// The three `step` methods (fused_step), with the signatures of torch's methods they replace.
PyMethodDef step_defs[] = {
    {"step", SCHEDX_FASTCALL(fused_step), METH_FASTCALL | METH_KEYWORDS,
     "step(self, epoch=None)\n--\n\nPerform a step: fused in schedx's engine when plain."},
    {"step", SCHEDX_FASTCALL(fused_step), METH_FASTCALL | METH_KEYWORDS,
     "step(self)\n--\n\nPerform a step: fused in schedx's engine when plain."},
    {"step", SCHEDX_FASTCALL(fused_step), METH_FASTCALL | METH_KEYWORDS,
     "step(self, metrics, epoch=None)\n--\n\nPerform a step: fused in schedx's engine when plain."},
};

// Adds `step_defs[k]` to the module as an instancemethod (a method of the class it is assigned to).
bool add_step_method(PyObject* module, PyMethodDef* def, const char* name) {
  Ref function(PyCFunction_NewEx(def, nullptr, nullptr));
  PyObject* method = function ? PyInstanceMethod_New(function.get()) : nullptr;
  if (method == nullptr || PyModule_AddObject(module, name, method) < 0) {
    Py_XDECREF(method);
    return false;
  }
  return true;
}

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "schedx._C", "schedx's fused CPU engine (see csrc/engine_cpu.cpp).", -1,
    methods, nullptr, nullptr, nullptr, nullptr};

bool intern_names() {
  const struct {
    PyObject** slot;
    const char* text;
  } table[] = {
      {&names.lr, "lr"},
      {&names.momentum, "momentum"},
      {&names.betas, "betas"},
      {&names.swa_lr, "swa_lr"},
      {&names.end_step, "end_step"},
      {&names.start_lr, "start_lr"},
      {&names.end_lr, "end_lr"},
      {&names.start_momentum, "start_momentum"},
      {&names.end_momentum, "end_momentum"},
      {&names.kind, "_kind"},
      {&names.setting_values, "_setting_values"},
      {&names.is_initial, "_is_initial"},
      {&names.last_epoch, "last_epoch"},
      {&names.step_count, "_step_count"},
      {&names.base_lrs, "base_lrs"},
      {&names.get_lr_called_within_step, "_get_lr_called_within_step"},
      {&names.last_lr, "_last_lr"},
      {&names.optimizer, "optimizer"},
      {&names.param_groups, "param_groups"},
      {&names.schedulers, "_schedulers"},
      {&names.python_step, "_python_step"},
      {&names.milestones, "_milestones"},
      {&names.best, "best"},
      {&names.mode, "mode"},
      {&names.threshold_mode, "threshold_mode"},
      {&names.threshold, "threshold"},
      {&names.patience, "patience"},
      {&names.cooldown, "cooldown"},
      {&names.cooldown_counter, "cooldown_counter"},
      {&names.num_bad_epochs, "num_bad_epochs"},
      {&names.factor, "factor"},
      {&names.eps, "eps"},
      {&names.min_lrs, "min_lrs"},
      {&names.min, "min"},
      {&names.max, "max"},
      {&names.rel, "rel"},
      {&names.abs, "abs"},
      {&names.anneal_func_type, "_anneal_func_type"},
      {&names.total_steps, "total_steps"},
      {&names.cycle_momentum, "cycle_momentum"},
      {&names.schedule_phases, "_schedule_phases"},
      {&names.use_beta1, "use_beta1"},
      {&names.cos, "cos"},
      {&names.linear, "linear"},
      {&names.anneal_func, "anneal_func"},
      {&names.anneal_epochs, "anneal_epochs"},
      {&names.eta_min, "eta_min"},
      {&names.t_cur, "T_cur"},
      {&names.t_i, "T_i"},
      {&names.t_mult, "T_mult"},
      {&names.total_size, "total_size"},
      {&names.scale_fn_custom, "_scale_fn_custom"},
      {&names.scale_fn_ref, "_scale_fn_ref"},
      {&names.scale_mode, "scale_mode"},
      {&names.step_ratio, "step_ratio"},
      {&names.max_lrs, "max_lrs"},
      {&names.base_momentums, "base_momentums"},
      {&names.max_momentums, "max_momentums"},
      {&names.func, "func"},
      {&names.args, "args"},
      {&names.cycle, "cycle"},
      {&names.step, "step"},
      {&names.get_last_lr, "get_last_lr"},

  };
  for (const auto& row : table) {
    *row.slot = PyUnicode_InternFromString(row.text);
    if (*row.slot == nullptr) return false;
  }
  return true;
}

}  // namespace
}  // namespace schedx

PyMODINIT_FUNC PyInit__C() {
  if (!schedx::intern_names()) return nullptr;
  PyObject* module = PyModule_Create(&schedx::module_def);
  if (module == nullptr) return nullptr;
  // schedx/lr_scheduler.py's StepPlan classes, composites and ReduceLROnPlateau take these as step.
  if (!schedx::add_step_method(module, &schedx::step_defs[0], "step_method") ||
      !schedx::add_step_method(module, &schedx::step_defs[1], "chain_step_method") ||
      !schedx::add_step_method(module, &schedx::step_defs[2], "plateau_step_method")) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
