// The schedule rules of torch.optim.lr_scheduler, written once for the CPU engine and the CUDA kernel.
//
// Every rule replays torch's Python arithmetic in torch's operation order, in double precision, so that
// with -ffp-contract=off (host) and --fmad=false (device) the CPU results are bit-identical to torch's.
// Each scheduler is split into a per-step part (the branch taken and the transcendental coefficients,
// which depend only on the step and the scheduler's settings) and a per-group part (basic arithmetic).
//
// Where Python would raise (division by zero, a math domain error, an overflowing power), a rule
// reports `ok = false` instead of producing a value; the host then lets torch's own code run the step,
// which raises torch's exception with torch's message.
#pragma once

#include <cmath>
#include <cstdint>

#include "dd_math.h"
#include "kinds.h"

#if defined(__CUDACC__)
#define SCHEDX_HD __host__ __device__ inline
#else
#define SCHEDX_HD inline
#endif

namespace schedx {

// math.pi
constexpr double kPi = 3.141592653589793;

// ---------------------------------------------------------------------------------------------------
// Python float semantics
// ---------------------------------------------------------------------------------------------------

// The C library's cos and pow on the host (what Python's math.cos and ** call); on the device, the
// same values through dd_math.h (CUDA's differ in the last bits).
SCHEDX_HD double libm_cos(double x) {
#if defined(__CUDA_ARCH__)
  return dd::cos_correctly_rounded(x);
#else
  return std::cos(x);
#endif
}

SCHEDX_HD double libm_pow(double x, double y) {
#if defined(__CUDA_ARCH__)
  return dd::pow_correctly_rounded(x, y);
#else
  return std::pow(x, y);
#endif
}

// 2**53: ints at or above this magnitude are left to Python.
constexpr double kMaxExactInt = 9007199254740992.0;

SCHEDX_HD bool exact_int(double v) { return std::fabs(v) < kMaxExactInt; }

// `a % b` for Python floats (CPython's float_rem); also exact for ints below 2**53. Requires b != 0.
SCHEDX_HD double py_mod(double a, double b) {
  double mod = std::fmod(a, b);
  if (mod != 0.0) {
    if ((b < 0.0) != (mod < 0.0)) mod += b;
  } else {
    mod = std::copysign(0.0, b);
  }
  return mod;
}

// `a // b` for Python floats (CPython's _float_div_mod); exact for ints below 2**53. Requires b != 0.
SCHEDX_HD double py_floordiv(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0.0 && ((b < 0.0) != (mod < 0.0))) div -= 1.0;
  if (div == 0.0) return std::copysign(0.0, a / b);
  double floordiv = std::floor(div);
  if (div - floordiv > 0.5) floordiv += 1.0;
  return floordiv;
}

// `x ** y` for Python floats. False where Python raises (0.0 to a negative power, an overflowing
// result) or leaves the reals (a negative base to a fractional power gives a complex number).
SCHEDX_HD bool py_pow(double x, double y, double* out) {
  if (y == 0.0) { *out = 1.0; return true; }
  if (std::isnan(x)) { *out = x; return true; }
  if (std::isnan(y)) { *out = (x == 1.0) ? 1.0 : y; return true; }
  if (x == 0.0 && y < 0.0) return false;
  if (x < 0.0 && std::isfinite(x) && std::isfinite(y) && y != std::floor(y)) return false;
  const double r = libm_pow(x, y);
  if (std::isinf(r) && std::isfinite(x) && std::isfinite(y)) return false;
  *out = r;
  return true;
}

// math.cos, which raises ValueError for infinite arguments.
SCHEDX_HD bool py_cos(double x, double* out) {
  if (std::isinf(x)) return false;
  *out = libm_cos(x);
  return true;
}

// `a / b` for Python floats, which raises ZeroDivisionError for b == 0.
SCHEDX_HD bool py_div(double a, double b, double* out) {
  if (b == 0.0) return false;
  *out = a / b;
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Per-group rules shared by the chainable and closed-form schedulers
// ---------------------------------------------------------------------------------------------------

enum class GroupRule : int32_t {
  Keep = 0,      // lr                                   (nothing to write)
  ScaleLr,       // lr * c
  ScaleBase,     // base_lr * c
  CosineRatio,   // c * (lr - eta_min) + eta_min
  CosineAdd,     // lr + (base_lr - eta_min) * c / 2
  CosineClosed,  // eta_min + (base_lr - eta_min) * c / 2
};

// What one step does to every group: the rule, its coefficient, and whether Python would have raised.
struct StepPlan {
  GroupRule rule;
  double c;
  double eta_min;
  bool ok;
};

SCHEDX_HD StepPlan keep_plan() { return {GroupRule::Keep, 0.0, 0.0, true}; }
SCHEDX_HD StepPlan failed_plan() { return {GroupRule::Keep, 0.0, 0.0, false}; }
SCHEDX_HD StepPlan plan_of(GroupRule rule, double c, bool ok, double eta_min = 0.0) {
  return {rule, c, eta_min, ok};
}

SCHEDX_HD bool rule_reads_base_lr(GroupRule rule) {
  return rule == GroupRule::ScaleBase || rule == GroupRule::CosineAdd ||
         rule == GroupRule::CosineClosed;
}

// A group's new LR in the arithmetic `Real` of its values: double for Python floats (and float64
// tensors), float for float32 tensors, where torch's tensor operations round each result to float32
// and take a Python float operand as float32.
template <typename Real>
SCHEDX_HD Real apply_group_rule_in(const StepPlan& p, Real lr, Real base_lr) {
  const Real c = static_cast<Real>(p.c), eta_min = static_cast<Real>(p.eta_min), two = 2;
  switch (p.rule) {
    case GroupRule::Keep: return lr;
    case GroupRule::ScaleLr: return lr * c;
    case GroupRule::ScaleBase: return base_lr * c;
    case GroupRule::CosineRatio: return c * (lr - eta_min) + eta_min;
    case GroupRule::CosineAdd: return lr + (base_lr - eta_min) * c / two;
    case GroupRule::CosineClosed: return eta_min + (base_lr - eta_min) * c / two;
  }
  return lr;
}

SCHEDX_HD double apply_group_rule(const StepPlan& p, double lr, double base_lr) {
  return apply_group_rule_in<double>(p, lr, base_lr);
}

// The closed cosine at position t of a period T: eta_min + (base - eta_min) * (1 + cos(pi*t/T)) / 2.
SCHEDX_HD StepPlan cosine_closed_plan(double t, double period, double eta_min) {
  double arg = 0.0, cosine = 0.0;
  if (!py_div(kPi * t, period, &arg) || !py_cos(arg, &cosine)) return failed_plan();
  return plan_of(GroupRule::CosineClosed, 1.0 + cosine, true, eta_min);
}

// ---------------------------------------------------------------------------------------------------
// Chainable (recursive) steps: torch's get_lr(). `h` holds the scheduler's settings (see kinds.h).
// ---------------------------------------------------------------------------------------------------

// StepLR: h = {step_size, gamma}
SCHEDX_HD StepPlan step_lr_recursive(double epoch, const double* h) {
  if (epoch == 0.0) return keep_plan();
  if (h[0] == 0.0) return failed_plan();
  if (py_mod(epoch, h[0]) != 0.0) return keep_plan();
  return plan_of(GroupRule::ScaleLr, h[1], true);
}

// MultiStepLR: h = {count of `epoch` among the milestones, gamma}
SCHEDX_HD StepPlan multi_step_lr_recursive(const double* h) {
  if (h[0] == 0.0) return keep_plan();
  double factor = 0.0;
  const bool ok = py_pow(h[1], h[0], &factor);
  return plan_of(GroupRule::ScaleLr, factor, ok);
}

// ConstantLR: h = {factor, total_iters}
SCHEDX_HD StepPlan constant_lr_recursive(double epoch, const double* h) {
  if (epoch == 0.0) return plan_of(GroupRule::ScaleLr, h[0], true);
  if (epoch != h[1]) return keep_plan();
  double undo = 0.0;
  const bool ok = py_div(1.0, h[0], &undo);
  return plan_of(GroupRule::ScaleLr, undo, ok);
}

// LinearLR: h = {start_factor, end_factor, total_iters}
SCHEDX_HD StepPlan linear_lr_recursive(double epoch, bool is_initial, const double* h) {
  const double start = h[0], end = h[1], total = h[2];
  if (epoch == 0.0) return plan_of(GroupRule::ScaleLr, start, true);
  if (is_initial || epoch > total) return keep_plan();
  double increment = 0.0;
  const bool ok = py_div(end - start, total * start + (epoch - 1.0) * (end - start), &increment);
  return plan_of(GroupRule::ScaleLr, 1.0 + increment, ok);
}

// ExponentialLR: h = {gamma}
SCHEDX_HD StepPlan exponential_lr_recursive(bool is_initial, const double* h) {
  if (is_initial) return keep_plan();
  return plan_of(GroupRule::ScaleLr, h[0], true);
}

// PolynomialLR: h = {total_iters, power}
SCHEDX_HD StepPlan polynomial_lr_recursive(double epoch, bool is_initial, const double* h) {
  const double total = h[0];
  if (is_initial || epoch > total) return keep_plan();
  double now = 0.0, before = 0.0, ratio = 0.0, factor = 0.0;
  const bool ok = py_div(epoch, total, &now) && py_div(epoch - 1.0, total, &before) &&
                  py_div(1.0 - now, 1.0 - before, &ratio) && py_pow(ratio, h[1], &factor);
  return plan_of(GroupRule::ScaleLr, factor, ok);
}

// CosineAnnealingLR: h = {T_max, eta_min}
SCHEDX_HD StepPlan cosine_lr_recursive(double epoch, int64_t step_count, bool is_initial,
                                       const double* h) {
  const double t_max = h[0], eta_min = h[1];
  if (is_initial) return keep_plan();
  if (step_count == 1 && epoch > 0.0) return cosine_closed_plan(epoch, t_max, eta_min);
  if (t_max == 0.0) return failed_plan();
  if (py_mod(epoch - 1.0 - t_max, 2.0 * t_max) == 0.0) {
    double cosine = 0.0;
    if (!py_cos(kPi / t_max, &cosine)) return failed_plan();
    return plan_of(GroupRule::CosineAdd, 1.0 - cosine, true, eta_min);
  }
  double now = 0.0, before = 0.0, ratio = 0.0;
  const bool ok = py_cos(kPi * epoch / t_max, &now) &&
                  py_cos(kPi * (epoch - 1.0) / t_max, &before) &&
                  py_div(1.0 + now, 1.0 + before, &ratio);
  return plan_of(GroupRule::CosineRatio, ratio, ok, eta_min);
}

SCHEDX_HD StepPlan plan_recursive_step(Kind kind, double epoch, int64_t step_count, bool is_initial,
                                       const double* h) {
  switch (kind) {
    case Kind::StepLR: return step_lr_recursive(epoch, h);
    case Kind::MultiStepLR: return multi_step_lr_recursive(h);
    case Kind::ConstantLR: return constant_lr_recursive(epoch, h);
    case Kind::LinearLR: return linear_lr_recursive(epoch, is_initial, h);
    case Kind::ExponentialLR: return exponential_lr_recursive(is_initial, h);
    case Kind::PolynomialLR: return polynomial_lr_recursive(epoch, is_initial, h);
    case Kind::CosineAnnealingLR: return cosine_lr_recursive(epoch, step_count, is_initial, h);
    case Kind::CosineAnnealingWarmRestarts: return cosine_closed_plan(h[0], h[1], h[2]);
  }
  return failed_plan();
}

// torch's CosineAnnealingWarmRestarts.step() bookkeeping without an epoch, on int T_cur, T_i and
// T_mult: T_cur + 1, and from the end of a period a restart (T_cur % T_i, T_i * T_mult). False, with
// nothing changed, where Python's ints would raise (a period of 0) or leave the exact range.
SCHEDX_HD bool advance_warm_restart(double* t_cur, double* t_i, double t_mult) {
  double cur = *t_cur + 1.0, period = *t_i;
  if (cur >= period) {
    const double next_period = period * t_mult;
    if (period == 0.0 || !exact_int(next_period)) return false;
    cur = py_mod(cur, period);
    period = next_period;
  }
  *t_cur = cur;
  *t_i = period;
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Closed forms: torch's _get_closed_form_lr(), used by step(epoch) and SequentialLR's hand-over.
// ---------------------------------------------------------------------------------------------------

// StepLR: base * gamma ** (epoch // step_size)
SCHEDX_HD StepPlan step_lr_closed(double epoch, const double* h) {
  double factor = 0.0;
  const bool ok = h[0] != 0.0 && py_pow(h[1], py_floordiv(epoch, h[0]), &factor);
  return plan_of(GroupRule::ScaleBase, factor, ok);
}

// MultiStepLR: h = {milestones at or before epoch, gamma}; base * gamma ** count
SCHEDX_HD StepPlan multi_step_lr_closed(const double* h) {
  double factor = 0.0;
  const bool ok = py_pow(h[1], h[0], &factor);
  return plan_of(GroupRule::ScaleBase, factor, ok);
}

// ConstantLR: base * (factor + (epoch >= total_iters) * (1 - factor))
SCHEDX_HD StepPlan constant_lr_closed(double epoch, const double* h) {
  const double done = (epoch >= h[1]) ? 1.0 : 0.0;
  return plan_of(GroupRule::ScaleBase, h[0] + done * (1.0 - h[0]), true);
}

// LinearLR: base * (start + (end - start) * min(total_iters, epoch) / total_iters)
SCHEDX_HD StepPlan linear_lr_closed(double epoch, const double* h) {
  const double start = h[0], end = h[1], total = h[2];
  const double progress = (epoch < total) ? epoch : total;
  double fraction = 0.0;
  const bool ok = py_div((end - start) * progress, total, &fraction);
  return plan_of(GroupRule::ScaleBase, start + fraction, ok);
}

// ExponentialLR: base * gamma ** epoch
SCHEDX_HD StepPlan exponential_lr_closed(double epoch, const double* h) {
  double factor = 0.0;
  const bool ok = py_pow(h[0], epoch, &factor);
  return plan_of(GroupRule::ScaleBase, factor, ok);
}

// PolynomialLR: base * (1 - min(total_iters, epoch) / total_iters) ** power
SCHEDX_HD StepPlan polynomial_lr_closed(double epoch, const double* h) {
  const double total = h[0];
  const double progress = (epoch < total) ? epoch : total;
  double fraction = 0.0, factor = 0.0;
  const bool ok = py_div(progress, total, &fraction) && py_pow(1.0 - fraction, h[1], &factor);
  return plan_of(GroupRule::ScaleBase, factor, ok);
}

SCHEDX_HD StepPlan plan_closed_form_step(Kind kind, double epoch, const double* h) {
  switch (kind) {
    case Kind::StepLR: return step_lr_closed(epoch, h);
    case Kind::MultiStepLR: return multi_step_lr_closed(h);
    case Kind::ConstantLR: return constant_lr_closed(epoch, h);
    case Kind::LinearLR: return linear_lr_closed(epoch, h);
    case Kind::ExponentialLR: return exponential_lr_closed(epoch, h);
    case Kind::PolynomialLR: return polynomial_lr_closed(epoch, h);
    case Kind::CosineAnnealingLR: return cosine_closed_plan(epoch, h[0], h[1]);
    case Kind::CosineAnnealingWarmRestarts: return cosine_closed_plan(h[0], h[1], h[2]);
  }
  return failed_plan();
}

// ---------------------------------------------------------------------------------------------------
// CyclicLR
// ---------------------------------------------------------------------------------------------------

#define SCHEDX_CYCLIC_MODES(X) X(Triangular) X(Triangular2) X(ExpRange)
enum class CyclicMode : int32_t { SCHEDX_CYCLIC_MODES(SCHEDX_ENUMERATOR) };
constexpr int kNumCyclicModes = 0 SCHEDX_CYCLIC_MODES(SCHEDX_COUNT);

// Where `epoch` falls in the cycle: the cycle number (counted from 1) and the fraction of the
// amplitude reached (torch's `scale_factor`).
struct CyclePosition {
  double cycle;
  double scale_factor;
  bool ok;
};

SCHEDX_HD CyclePosition cyclic_position(double epoch, double total_size, double step_ratio) {
  CyclePosition p{0.0, 0.0, false};
  double progress = 0.0;
  if (!py_div(epoch, total_size, &progress) || !std::isfinite(1.0 + progress)) return p;
  p.cycle = std::floor(1.0 + progress);
  const double x = 1.0 + progress - p.cycle;
  p.ok = (x <= step_ratio) ? py_div(x, step_ratio, &p.scale_factor)
                           : py_div(x - 1.0, step_ratio - 1.0, &p.scale_factor);
  return p;
}

// The built-in scale functions, applied to the cycle number or the iteration.
SCHEDX_HD bool cyclic_builtin_scale(CyclicMode mode, double gamma, double x, double* out) {
  switch (mode) {
    case CyclicMode::Triangular: *out = 1.0; return true;
    case CyclicMode::Triangular2: {
      double power = 0.0;
      return py_pow(2.0, x - 1.0, &power) && py_div(1.0, power, out);
    }
    case CyclicMode::ExpRange: return py_pow(gamma, x, out);
  }
  return false;
}

SCHEDX_HD double cyclic_lr(double base_lr, double max_lr, double scale_factor, double scale) {
  return base_lr + (max_lr - base_lr) * scale_factor * scale;
}

SCHEDX_HD double cyclic_momentum(double base_momentum, double max_momentum, double scale_factor,
                                 double scale) {
  return max_momentum - (max_momentum - base_momentum) * scale_factor * scale;
}

// ---------------------------------------------------------------------------------------------------
// OneCycleLR
// ---------------------------------------------------------------------------------------------------

// torch's OneCycleLR has two phases, or three with `three_phase`; a schedule with more (a state dict
// can carry any list) is left to torch's code, on the host and on the device alike.
constexpr int kMaxOneCyclePhases = 3;

// The phase `step` falls in, and how far through it (torch's `pct`). `end_steps` are the phases'
// `end_step` values; the last phase takes every step past the others.
struct OneCyclePhase {
  int32_t index;
  double pct;
  bool ok;
};

SCHEDX_HD OneCyclePhase one_cycle_phase(double step, const double* end_steps, int32_t n_phases) {
  double start = 0.0;
  for (int32_t i = 0; i < n_phases; ++i) {
    const double end = end_steps[i];
    if (step <= end || i == n_phases - 1) {
      OneCyclePhase phase{i, 0.0, false};
      phase.ok = py_div(step - start, end - start, &phase.pct);
      return phase;
    }
    start = end;
  }
  return {0, 0.0, false};
}

// The part of the cosine annealing that depends only on the step: cos(pi * pct) + 1.
SCHEDX_HD bool one_cycle_cos_out(double pct, double* out) {
  double cosine = 0.0;
  if (!py_cos(kPi * pct, &cosine)) return false;
  *out = cosine + 1.0;
  return true;
}

SCHEDX_HD double one_cycle_anneal_cos(double start, double end, double cos_out) {
  return end + (start - end) / 2.0 * cos_out;
}

SCHEDX_HD double one_cycle_anneal_linear(double start, double end, double pct) {
  return (end - start) * pct + start;
}

// ---------------------------------------------------------------------------------------------------
// SWALR (torch.optim.swa_utils)
// ---------------------------------------------------------------------------------------------------

// Python's max(0, min(1, x)).
SCHEDX_HD double clamp_unit(double x) {
  const double upper = (x < 1.0) ? x : 1.0;
  return (upper > 0.0) ? upper : 0.0;
}

SCHEDX_HD double swa_anneal(bool cosine, double t) {
  return cosine ? (1.0 - libm_cos(kPi * t)) / 2.0 : t;
}

// The interpolation weights of the previous and the current step.
struct SwaAlphas {
  double previous;
  double current;
};

SCHEDX_HD SwaAlphas swa_alphas(int64_t step_count, double anneal_epochs, bool cosine) {
  double step = static_cast<double>(step_count - 1);
  if (anneal_epochs == 0.0 && step < 1.0) step = 1.0;
  const double span = (anneal_epochs > 1.0) ? anneal_epochs : 1.0;
  return {swa_anneal(cosine, clamp_unit((step - 1.0) / span)),
          swa_anneal(cosine, clamp_unit(step / span))};
}

SCHEDX_HD double swa_lr(double lr, double swa_target, SwaAlphas a) {
  const double previous =
      (a.previous == 1.0) ? swa_target : (lr - a.previous * swa_target) / (1.0 - a.previous);
  return swa_target * a.current + previous * (1.0 - a.current);
}

// ---------------------------------------------------------------------------------------------------
// ReduceLROnPlateau
// ---------------------------------------------------------------------------------------------------

#define SCHEDX_PLATEAU_CRITERIA(X) X(MinRel) X(MinAbs) X(MaxRel) X(MaxAbs)
enum class PlateauCriterion : int32_t { SCHEDX_PLATEAU_CRITERIA(SCHEDX_ENUMERATOR) };
constexpr int kNumPlateauCriteria = 0 SCHEDX_PLATEAU_CRITERIA(SCHEDX_COUNT);

struct PlateauState {
  double best;
  int64_t num_bad_epochs;
  int64_t cooldown_counter;
};

struct PlateauSettings {
  PlateauCriterion criterion;
  double threshold;
  double patience;
  int64_t cooldown;
};

SCHEDX_HD bool plateau_is_better(PlateauCriterion c, double threshold, double a, double best) {
  switch (c) {
    case PlateauCriterion::MinRel: return a < best * (1.0 - threshold);
    case PlateauCriterion::MinAbs: return a < best - threshold;
    case PlateauCriterion::MaxRel: return a > best * (threshold + 1.0);
    case PlateauCriterion::MaxAbs: return a > best + threshold;
  }
  return false;
}

// Records one metric; true when the learning rates must be reduced. The caller resets the counters
// (plateau_after_reduction) once the reduction is done, as torch does.
SCHEDX_HD bool plateau_observe(PlateauState* s, const PlateauSettings& p, double current) {
  if (plateau_is_better(p.criterion, p.threshold, current, s->best)) {
    s->best = current;
    s->num_bad_epochs = 0;
  } else {
    s->num_bad_epochs += 1;
  }
  if (s->cooldown_counter > 0) {
    s->cooldown_counter -= 1;
    s->num_bad_epochs = 0;
  }
  return static_cast<double>(s->num_bad_epochs) > p.patience;
}

SCHEDX_HD void plateau_after_reduction(PlateauState* s, const PlateauSettings& p) {
  s->cooldown_counter = p.cooldown;
  s->num_bad_epochs = 0;
}

// max(old_lr * factor, min_lr) as Python's max picks it; `write` is false when the change is within eps.
SCHEDX_HD double plateau_reduced_lr(double old_lr, double factor, double min_lr, double eps,
                                    bool* write) {
  const double scaled = old_lr * factor;
  const double new_lr = (min_lr > scaled) ? min_lr : scaled;
  *write = old_lr - new_lr > eps;
  return new_lr;
}

}  // namespace schedx
