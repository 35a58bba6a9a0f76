// The Swa family: SWALR (torch.optim.swa_utils) with one of torch's two anneal functions.
#include "py/family.h"

namespace schedx {
namespace {

// What SWALR's get_lr() reads besides the groups.
struct SwaInputs {
  int64_t step_count;
  double anneal_epochs;
  bool cosine;
};

// SWALR's inputs from its dict at `step_count`: false for an anneal function other than torch's two
// (`functions`, the registered (cosine, linear)).
bool read_swa_inputs(PyObject* dict, PyObject* functions, int64_t step_count, SwaInputs* in) {
  PyObject* anneal_func = PyDict_GetItemWithError(dict, names.anneal_func);
  in->step_count = step_count;
  in->cosine = anneal_func == PyTuple_GET_ITEM(functions, 0);
  return read_dict_real(dict, names.anneal_epochs, &in->anneal_epochs) &&
         (in->cosine || anneal_func == PyTuple_GET_ITEM(functions, 1));
}

// SWALR's get_lr(), written to the groups.
PyObject* swa_pass(PyObject* groups, const SwaInputs& in, const LastLrOwner& refill = {}) {
  const SwaAlphas alphas = swa_alphas(in.step_count, in.anneal_epochs, in.cosine);
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

bool is_anneal_functions(PyObject* functions) {
  return PyTuple_CheckExact(functions) && PyTuple_GET_SIZE(functions) == 2;
}

// swa_get_lr(scheduler, functions): SWALR's _fused_lr(); `functions` as read_swa_inputs takes them.
PyObject* swa_get_lr(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("swa_get_lr", nargs, 2)) return nullptr;
  if (!is_anneal_functions(args[1])) return reference_path();
  SwaInputs in;
  return get_lr_from_dict(
      args[0],
      [&](Held&, PyObject* dict, int64_t, int64_t step_count) {
        return read_swa_inputs(dict, args[1], step_count, &in);
      },
      [&](PyObject* groups) { return swa_pass(groups, in); });
}

PyObject* plain_swa_step(const PlainClass& cls, PyObject* scheduler, PyObject* const*) {
  SwaInputs in;
  return counted_step(
      scheduler,
      [&](Held&, PyObject* dict, int64_t, int64_t step_count) {
        return read_swa_inputs(dict, cls.extra, step_count, &in);
      },
      [&](PyObject* groups, const LastLrOwner& refill) { return swa_pass(groups, in, refill); });
}

bool accepts_swa(const PlainClass& cls) { return is_anneal_functions(cls.extra); }

PyMethodDef swa_methods[] = {
    {"swa_get_lr", SCHEDX_FASTCALL(swa_get_lr), METH_FASTCALL,
     "SWALR's get_lr() at its current step count, read from its dict."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

const EngineFamily kSwaFamily{0, accepts_swa, plain_swa_step, swa_methods};

}  // namespace schedx
