// The schedulers whose step is a StepPlan (formulas.h). `h` is the array of settings each kind's rules
// read, in this order.
#pragma once

#include <cstdint>

// The engine's enumerations are X-macro lists, X(name) per enumerator in numbering order from 0: one
// list gives the C++ enum and the names the extension exports (_C.constants()), which Python reads
// instead of keeping its own copy.
#define SCHEDX_ENUMERATOR(name) name,

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

enum class Kind : int32_t { SCHEDX_KINDS(SCHEDX_ENUMERATOR) };

#define SCHEDX_COUNT(name) +1
constexpr int kNumKinds = 0 SCHEDX_KINDS(SCHEDX_COUNT);
constexpr int kMaxSettings = 3;

}  // namespace schedx
