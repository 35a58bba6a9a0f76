// The schedulers whose step is a StepPlan (formulas.h). Mirrored by schedx._engine.Kind; a test checks
// that the two agree. `h` is the array of settings each kind's rules read, in this order.
#pragma once

#include <cstdint>

namespace schedx {

enum class Kind : int32_t {
  StepLR = 0,                       // h = {step_size, gamma}
  MultiStepLR = 1,                  // h = {milestone count, gamma}
  ConstantLR = 2,                   // h = {factor, total_iters}
  LinearLR = 3,                     // h = {start_factor, end_factor, total_iters}
  ExponentialLR = 4,                // h = {gamma}
  PolynomialLR = 5,                 // h = {total_iters, power}
  CosineAnnealingLR = 6,            // h = {T_max, eta_min}
  CosineAnnealingWarmRestarts = 7,  // h = {T_cur, T_i, eta_min}
};

constexpr int kNumKinds = 8;
constexpr int kMaxSettings = 3;

}  // namespace schedx
