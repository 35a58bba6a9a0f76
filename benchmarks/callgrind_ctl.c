/* Callgrind's client requests, for callgrind.py: start instrumenting once the imports are done, and
 * count instructions only between begin() and end(label), each such region dumped to its own
 * profile named by its label. Outside valgrind every request is a no-op.
 *
 *     callgrind_ctl.start_instrumentation()
 *     callgrind_ctl.begin(); loop(20); callgrind_ctl.end("schedx|StepLR|1|20")
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <valgrind/callgrind.h>

static PyObject *running_on_valgrind(PyObject *module, PyObject *unused) {
    return PyBool_FromLong(RUNNING_ON_VALGRIND);
}

static PyObject *start_instrumentation(PyObject *module, PyObject *unused) {
    CALLGRIND_START_INSTRUMENTATION;
    Py_RETURN_NONE;
}

/* Run with --collect-atstart=no: collection is off until the first toggle. */
static PyObject *begin(PyObject *module, PyObject *unused) {
    CALLGRIND_ZERO_STATS;
    CALLGRIND_TOGGLE_COLLECT;
    Py_RETURN_NONE;
}

static PyObject *end(PyObject *module, PyObject *label) {
    CALLGRIND_TOGGLE_COLLECT;
    const char *text = PyUnicode_AsUTF8(label);
    if (text == NULL) return NULL;
    CALLGRIND_DUMP_STATS_AT(text);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"running_on_valgrind", running_on_valgrind, METH_NOARGS, "True when run under valgrind."},
    {"start_instrumentation", start_instrumentation, METH_NOARGS,
     "Start instrumenting (run with --instr-atstart=no: imports run uninstrumented, 4x faster)."},
    {"begin", begin, METH_NOARGS, "Zero the counters and start collecting."},
    {"end", end, METH_O, "end(label): stop collecting and dump the counts as a profile named label."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "callgrind_ctl", NULL, -1, methods};

PyMODINIT_FUNC PyInit_callgrind_ctl(void) { return PyModule_Create(&module); }
