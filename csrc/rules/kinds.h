// How the engine classifies schedulers, once: the families (one csrc/families/ file each; the stage
// families of a tensor-mode program are some of them) and, within the Plan family, the kinds, whose
// step is a StepPlan (formulas.h).
#pragma once

#include <cstdint>

// The engine's enumerations are X-macro lists, X(name) per enumerator in numbering order from 0: one
// list gives the C++ enum and the names the extension exports (_C.constants()), which Python reads
// instead of keeping its own copy.
#define SCHEDX_ENUMERATOR(name) name,

// The families, one row each: py/family.h declares each one's EngineFamily (k<name>Family, defined in
// its csrc/families/ file) and py/step.cpp lists them in this order. Tensor mode (device/program.h)
// has programs for Plan (CosineAnnealingWarmRestarts is a Plan stage there), OneCycle, Cyclic,
// Plateau and Schedule, and composes them itself (Composition).
#define SCHEDX_FAMILIES(X)                                                                     \
  X(Plan)         /* the kinds below: settings read from the dict, one StepPlan per step */   \
  X(WarmRestarts) /* CosineAnnealingWarmRestarts: restart bookkeeping, then its StepPlan */   \
  X(Chain)        /* ChainedScheduler of Plan schedulers: one visit per group for them all */ \
  X(Sequence)     /* SequentialLR between milestones: its current Plan child's step */        \
  X(Schedule)     /* LambdaLR, MultiplicativeLR, ScheduleLR with compiled schedules */        \
  X(Plateau)      /* ReduceLROnPlateau */                                                     \
  X(Cyclic)       /* CyclicLR with a built-in scale function */                               \
  X(OneCycle)     /* OneCycleLR */                                                            \
  X(Swa)          /* SWALR with a built-in anneal function */

#define SCHEDX_KINDS(X)                                  \
  X(StepLR)                      /* h = {step_size, gamma} */                   \
  X(MultiStepLR)                 /* h = {milestone count, gamma} */             \
  X(ConstantLR)                  /* h = {factor, total_iters} */                \
  X(LinearLR)                    /* h = {start_factor, end_factor, total_iters} */ \
  X(ExponentialLR)               /* h = {gamma} */                              \
  X(PolynomialLR)                /* h = {total_iters, power} */                 \
  X(CosineAnnealingLR)           /* h = {T_max, eta_min} */                     \
  X(CosineAnnealingWarmRestarts) /* h = {T_cur, T_i, eta_min} */

namespace schedx {

enum class Family : int32_t { SCHEDX_FAMILIES(SCHEDX_ENUMERATOR) };
enum class Kind : int32_t { SCHEDX_KINDS(SCHEDX_ENUMERATOR) };

#define SCHEDX_COUNT(name) +1
constexpr int kNumFamilies = 0 SCHEDX_FAMILIES(SCHEDX_COUNT);
constexpr int kNumKinds = 0 SCHEDX_KINDS(SCHEDX_COUNT);
constexpr int kMaxSettings = 3;

}  // namespace schedx
