// The fused CUDA step: one launch runs a tensor-LR program (program.h) for every group.
//
// The program's arrays, counters included, live on the device, and the kernel's only argument is the
// program itself, the same at every step: so a launch can be captured in a CUDA graph, and each replay
// advances the schedule. Thread 0 of every block decides the step (the per-step part, formulas.h); the
// threads then apply it to their groups; the last block to finish commits the new counters, after every
// block has read the old ones.
//
// Built with nvcc alone (no torch headers): the Python layer passes data pointers and the raw handle of
// torch's current stream. Compile with --fmad=false, so the arithmetic is the CPU engine's.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <cuda_runtime.h>

#include "device/program.h"
#include "device/program_capsule.h"
#include "py/api.h"

namespace schedx {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 1024;

__global__ void program_kernel(Program prog) {
  __shared__ ProgramStep step;
  if (threadIdx.x == 0) step = decide_program(prog);
  __syncthreads();
  if (step.ok) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < prog.n_groups;
         i += stride)
      step_group(prog, step, i);
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  __threadfence();
  auto* blocks_done = reinterpret_cast<unsigned long long*>(&prog.counters[counter::kBlocksDone]);
  if (atomicAdd(blocks_done, 1ULL) == gridDim.x - 1) {
    commit_step(prog, step);
    *blocks_done = 0;
    __threadfence();
  }
}

// The status an earlier step of the program left in host memory (program.h's status_host): 0 while
// every step that has run so far was computed. Read without a synchronisation, so a step still queued
// or running is not seen yet.
int64_t status_seen(const Program& prog) {
  if (prog.status_host == nullptr) return kStatusOk;
  return *static_cast<volatile const int64_t*>(prog.status_host);
}

PyObject* cuda_error(const char* what, cudaError_t err) {
  PyErr_Format(PyExc_RuntimeError, "schedx: %s: %s", what, cudaGetErrorString(err));
  return nullptr;
}

// Makes `device` the current device for the scope, and the one current before it current again at
// its end: a kernel launches on the current device, and the program's arrays live on `device`, which
// need not be the caller's current one (torch.cuda.set_device, another device's tensors).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    err_ = cudaGetDevice(&previous_);
    if (err_ == cudaSuccess && previous_ != device) err_ = cudaSetDevice(device);
  }
  ~DeviceGuard() {
    int current = previous_;
    if (err_ == cudaSuccess && cudaGetDevice(&current) == cudaSuccess && current != previous_)
      cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  cudaError_t error() const { return err_; }

 private:
  int previous_ = 0;
  cudaError_t err_;
};

// launch(capsule, device, stream, mode, is_initial, metric, metric_is_f64) -> status: one step of the
// program on `device` (the index of the device its arrays live on), on `stream` (a raw cudaStream_t
// handle of that device, as torch.cuda.current_stream(device).cuda_stream gives it), unless an
// earlier step is seen to have failed: then nothing is launched and its status is returned (0
// otherwise). Does not synchronize.
PyObject* launch(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_nargs("launch", nargs, 7)) return nullptr;
  Program* prog = program_from_capsule(args[0]);
  if (prog == nullptr || !set_program_mode(prog, args[3], args[4]) ||
      !set_program_metric(prog, args[5], args[6]))
    return nullptr;
  const int64_t seen = status_seen(*prog);
  if (seen != kStatusOk) return PyLong_FromLongLong(seen);
  const long device = PyLong_AsLong(args[1]);
  const long long stream_handle = PyLong_AsLongLong(args[2]);
  if ((device == -1 || stream_handle == -1) && PyErr_Occurred()) return nullptr;
  auto stream = reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(stream_handle));
  const int64_t wanted = (prog->n_groups + kThreadsPerBlock - 1) / kThreadsPerBlock;
  const unsigned blocks = static_cast<unsigned>(wanted < kMaxBlocks ? wanted : kMaxBlocks);
  DeviceGuard on_device(static_cast<int>(device));
  if (on_device.error() != cudaSuccess)
    return cuda_error("cannot select the program's device", on_device.error());
  program_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(*prog);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return cuda_error("the CUDA step failed to launch", err);
  return PyLong_FromLongLong(kStatusOk);
}

PyMethodDef methods[] = {
    {"launch", SCHEDX_FASTCALL(launch), METH_FASTCALL,
     "One step of a tensor-LR program as one kernel launch on the given stream."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          "schedx._cuda",
                          "schedx's fused CUDA step (see csrc/device/engine_cuda.cu).",
                          -1,
                          methods,
                          nullptr,
                          nullptr,
                          nullptr,
                          nullptr};

}  // namespace
}  // namespace schedx

PyMODINIT_FUNC PyInit__cuda() { return PyModule_Create(&schedx::module_def); }
