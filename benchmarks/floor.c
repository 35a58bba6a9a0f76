/* The physical floor for a float-LR scheduler step: for every param-group dict in a list, read
 * group["lr"], multiply it by a constant and write a new float back. No schedule, no bookkeeping,
 * no `_last_lr` list: what any compiled scheduler must at least do. bench_cpu.py compiles this with
 * the system C compiler (-O3) and times it like a scheduler (impl="floor").
 *
 *     floor.scale(optimizer.param_groups, 0.9999)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *key_lr;

static PyObject *scale(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scale(groups: list[dict], factor: float)");
        return NULL;
    }
    const double factor = PyFloat_AsDouble(args[1]);
    if (factor == -1.0 && PyErr_Occurred()) return NULL;
    PyObject *groups = args[0];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(groups); ++i) {
        PyObject *group = PyList_GET_ITEM(groups, i);
        if (!PyDict_Check(group)) {
            PyErr_SetString(PyExc_TypeError, "every param group must be a dict");
            return NULL;
        }
        PyObject *lr = PyDict_GetItemWithError(group, key_lr); /* borrowed */
        if (lr == NULL) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key_lr);
            return NULL;
        }
        const double old = PyFloat_AsDouble(lr);
        if (old == -1.0 && PyErr_Occurred()) return NULL;
        PyObject *value = PyFloat_FromDouble(old * factor);
        if (value == NULL) return NULL;
        const int failed = PyDict_SetItem(group, key_lr, value);
        Py_DECREF(value);
        if (failed) return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scale", (PyCFunction)(void (*)(void))scale, METH_FASTCALL,
     "scale(groups, factor): group['lr'] = group['lr'] * factor for every dict in groups."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "floor", NULL, -1, methods};

PyMODINIT_FUNC PyInit_floor(void) {
    key_lr = PyUnicode_InternFromString("lr");
    if (key_lr == NULL) return NULL;
    return PyModule_Create(&module);
}
