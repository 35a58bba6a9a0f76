// The CPython glue every family's step uses: owned and held references, per-group buffers, and readers
// of Python floats and ints that take exactly what the engine can compute with torch's result.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <new>
#include <utility>

#include "py/api.h"
#include "py/names.h"
#include "rules/formulas.h"

namespace schedx {

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

// A pass's answer when torch's code must run the step: None.
inline PyObject* reference_path() { Py_RETURN_NONE; }

// Whether letting go of `v` runs no Python code: an exact float or int, or an exact tuple or list of
// them (a betas pair). Anything else may have a finalizer, or hold something that has one.
inline bool releases_quietly(PyObject* v) {
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
inline bool read_real(PyObject* v, double* out) {
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

inline bool read_int64(PyObject* v, int64_t* out) {
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

// An attribute of a scheduler, or null (with no error set) when it has none.
inline PyObject* attribute(PyObject* obj, PyObject* name) {
  PyObject* v = PyObject_GetAttr(obj, name);
  if (v == nullptr) PyErr_Clear();
  return v;
}

// Stores a new reference with `store` (PyObject_SetAttr, PyDict_SetItem), consuming it; false (error
// set) on failure, a null `value` (its allocation failed) included.
inline bool store_new(int (*store)(PyObject*, PyObject*, PyObject*), PyObject* target, PyObject* key,
               PyObject* value) {
  if (value == nullptr) return false;
  const int rc = store(target, key, value);
  Py_DECREF(value);
  return rc == 0;
}

inline bool set_attr(PyObject* obj, PyObject* name, PyObject* value) {
  return store_new(PyObject_SetAttr, obj, name, value);
}

inline bool set_item(PyObject* dict, PyObject* key, PyObject* value) {
  return store_new(PyDict_SetItem, dict, key, value);
}

inline bool read_attr_int64(PyObject* obj, PyObject* name, int64_t* out) {
  Ref v(attribute(obj, name));
  return v && read_int64(v.get(), out);
}

inline PyObject* group_at(PyObject* groups, Py_ssize_t i) { return PyList_GET_ITEM(groups, i); }

// An item of a dict (a param group, a scheduler's __dict__) as a double (read_real), or false when it
// is missing or not a float or an int.
inline bool read_dict_real(PyObject* dict, PyObject* key, double* out) {
  PyObject* v = PyDict_GetItemWithError(dict, key);
  if (v == nullptr) {
    PyErr_Clear();
    return false;
  }
  return read_real(v, out);
}

inline bool read_dict_int64(PyObject* dict, PyObject* key, int64_t* out) {
  PyObject* v = PyDict_GetItemWithError(dict, key);
  return v != nullptr && read_int64(v, out);
}

// The items of `dict` under the given keys, each into its pointer, held by `held` (a later lookup can
// run a key's __eq__); false when one is missing.
inline bool dict_items(Held& held, PyObject* dict,
                std::initializer_list<std::pair<PyObject*, PyObject**>> items) {
  for (const auto& [key, out] : items)
    if ((*out = held.hold(PyDict_GetItemWithError(dict, key))) == nullptr) return false;
  return true;
}

// A per-group list the scheduler holds (base_lrs, max_lrs, ...), read at index i; false past its end
// (Python code run during the step may have shortened it).
inline bool read_list_real(PyObject* list, Py_ssize_t i, double* out) {
  return i < PyList_GET_SIZE(list) && read_real(PyList_GET_ITEM(list, i), out);
}

inline bool is_list_of_length(PyObject* list, Py_ssize_t n) {
  return list != nullptr && PyList_CheckExact(list) && PyList_GET_SIZE(list) == n;
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

// Whether a str equals an interned name: by identity first (attribute values set from literals are
// interned too), then by value.
inline bool is_name(PyObject* s, PyObject* name) { return s == name || PyUnicode_Compare(s, name) == 0; }

// `optimizer.param_groups`, or null with the optimizer's error.
inline PyObject* param_groups_of(PyObject* optimizer) {
  return PyObject_GetAttr(optimizer, names.param_groups);
}

// A registered scheduler's `optimizer`, held by `held` (reading its param_groups can run Python code),
// or null: without an error when it has none (then declined(): Python's step raises torch's error).
inline PyObject* optimizer_of(Held& held, PyObject* dict) {
  return held.hold(PyDict_GetItemWithError(dict, names.optimizer));
}

}  // namespace schedx
