// cos and pow correctly rounded, for the device. The CPU engine calls the C library's cos and pow,
// whose results are the exact value correctly rounded in all but about one case in a thousand; CUDA's
// own are off by up to 2 ulp, and torch's recursive rules carry every such error into all later steps
// and amplify it near a cosine's minimum (a 1-ulp difference in cos(pi * t / T) near t = T moves the
// LR by thousands of ulp). So the kernel computes them in double-double arithmetic (about 100 bits)
// and rounds once: the C library's result, bit for bit, wherever that one is correctly rounded.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SCHEDX_DD __host__ __device__ inline
#else
#define SCHEDX_DD inline
#endif

namespace schedx {
namespace dd {

// An unevaluated sum hi + lo with |lo| <= ulp(hi) / 2.
struct Double2 {
  double hi;
  double lo;
};

SCHEDX_DD Double2 quick_two_sum(double a, double b) {  // requires |a| >= |b|
  const double s = a + b;
  return {s, b - (s - a)};
}

SCHEDX_DD Double2 two_sum(double a, double b) {
  const double s = a + b;
  const double bb = s - a;
  return {s, (a - (s - bb)) + (b - bb)};
}

SCHEDX_DD Double2 two_prod(double a, double b) {
  const double p = a * b;
  return {p, std::fma(a, b, -p)};
}

SCHEDX_DD Double2 add(Double2 a, Double2 b) {
  Double2 s = two_sum(a.hi, b.hi);
  const Double2 t = two_sum(a.lo, b.lo);
  s.lo += t.hi;
  s = quick_two_sum(s.hi, s.lo);
  s.lo += t.lo;
  return quick_two_sum(s.hi, s.lo);
}

SCHEDX_DD Double2 neg(Double2 a) { return {-a.hi, -a.lo}; }

SCHEDX_DD Double2 mul(Double2 a, Double2 b) {
  Double2 p = two_prod(a.hi, b.hi);
  p.lo += a.hi * b.lo + a.lo * b.hi;
  return quick_two_sum(p.hi, p.lo);
}

SCHEDX_DD Double2 mul(Double2 a, double b) {
  Double2 p = two_prod(a.hi, b);
  p.lo += a.lo * b;
  return quick_two_sum(p.hi, p.lo);
}

SCHEDX_DD Double2 div(Double2 a, Double2 b) {
  const double q1 = a.hi / b.hi;
  Double2 r = add(a, neg(mul(b, q1)));
  const double q2 = r.hi / b.hi;
  r = add(r, neg(mul(b, q2)));
  const double q3 = r.hi / b.hi;
  return add(quick_two_sum(q1, q2), {q3, 0.0});
}

SCHEDX_DD Double2 div(Double2 a, double b) {
  const double q1 = a.hi / b;
  const Double2 p = two_prod(q1, b);
  Double2 r = two_sum(a.hi, -p.hi);
  r.lo -= p.lo;
  r.lo += a.lo;
  const double q2 = (r.hi + r.lo) / b;
  return quick_two_sum(q1, q2);
}

// pi / 2 as the sum of three doubles (mpmath, 400 bits).
constexpr double kHalfPi1 = 0x1.921fb54442d18p+0;
constexpr double kHalfPi2 = 0x1.1a62633145c07p-54;
constexpr double kHalfPi3 = -0x1.f1976b7ed8fbcp-110;
constexpr double kTwoOverPi = 0x1.45f306dc9c883p-1;
// Beyond this the reduction above loses bits; no schedule here comes near it.
constexpr double kReductionLimit = 0x1p+30;
constexpr int kTaylorTerms = 16;  // (pi/4)^32 / 32! < 2^-118

// x - k * pi / 2, in double-double.
SCHEDX_DD Double2 reduce(double x, double k) {
  Double2 r = add({x, 0.0}, neg(two_prod(k, kHalfPi1)));
  r = add(r, neg(two_prod(k, kHalfPi2)));
  return add(r, neg(two_prod(k, kHalfPi3)));
}

// cos(r) or sin(r) for |r| <= pi / 4, by their Taylor series.
SCHEDX_DD Double2 taylor(Double2 r, bool sine) {
  const Double2 r2 = mul(r, r);
  Double2 term = sine ? r : Double2{1.0, 0.0};
  Double2 sum = term;
  for (int n = 1; n <= kTaylorTerms; ++n) {
    const double a = sine ? 2.0 * n : 2.0 * n - 1.0;
    term = div(mul(term, r2), a * (a + 1.0));
    sum = add(sum, (n % 2 != 0) ? neg(term) : term);
  }
  return sum;
}

SCHEDX_DD double cos_correctly_rounded(double x) {
  if (!(std::fabs(x) < kReductionLimit)) return std::cos(x);
  const double k = std::nearbyint(x * kTwoOverPi);
  const Double2 r = reduce(x, k);
  const int64_t quadrant = static_cast<int64_t>(k) & 3;
  Double2 c = taylor(r, quadrant % 2 != 0);
  if (quadrant == 1 || quadrant == 2) c = neg(c);
  return c.hi + c.lo;
}

// ln 2 as the sum of two doubles (mpmath, 400 bits).
constexpr double kLn2Hi = 0x1.62e42fefa39efp-1;
constexpr double kLn2Lo = 0x1.abc9e3b39803fp-56;
constexpr int kExpHalvings = 10;  // exp(r) = exp(r / 2^10)^(2^10), |r / 2^10| < 3.4e-4
constexpr int kExpTerms = 10;     // (3.4e-4)^11 / 11! < 2^-150

// e^a, for a.hi in the range where e^a is a finite, normal double.
SCHEDX_DD Double2 exp(Double2 a) {
  const double k = std::nearbyint(a.hi / kLn2Hi);
  Double2 r = add(a, neg(mul(Double2{kLn2Hi, kLn2Lo}, k)));
  r = {std::ldexp(r.hi, -kExpHalvings), std::ldexp(r.lo, -kExpHalvings)};
  // e^r - 1 by its Taylor series, then (e^r - 1)(e^r + 1) = e^(2r) - 1, kExpHalvings times.
  Double2 term = r, sum = r;
  for (int n = 2; n <= kExpTerms; ++n) {
    term = div(mul(term, r), static_cast<double>(n));
    sum = add(sum, term);
  }
  for (int i = 0; i < kExpHalvings; ++i) sum = add(mul(sum, sum), mul(sum, 2.0));
  const Double2 e = add(sum, {1.0, 0.0});
  const int scale = static_cast<int>(k);
  return {std::ldexp(e.hi, scale), std::ldexp(e.lo, scale)};
}

// ln x for a finite x > 0: one Newton step from the double estimate, y + x e^-y - 1.
SCHEDX_DD Double2 log(double x) {
  const double y = std::log(x);
  const Double2 t = mul(exp(Double2{-y, 0.0}), x);
  return add({y, 0.0}, add(t, {-1.0, 0.0}));
}

// x^n for an integer n, by repeated squaring.
SCHEDX_DD Double2 pow_int(double x, double n) {
  Double2 result{1.0, 0.0}, base{x, 0.0};
  for (double m = std::fabs(n); m > 0.0; m = std::floor(m / 2.0)) {
    if (std::fmod(m, 2.0) == 1.0) result = mul(result, base);
    base = mul(base, base);
  }
  return (n < 0.0) ? div(Double2{1.0, 0.0}, result) : result;
}

// Where the double-double paths below stay accurate (the low part of a result near the bottom of the
// normal range would be subnormal); outside, CUDA's pow is used.
constexpr double kMaxIntegerExponent = 0x1p+20;
constexpr double kMaxExpArgument = 700.0;
constexpr double kMinAccurateResult = 0x1p-960;

SCHEDX_DD double pow_correctly_rounded(double x, double y) {
  if (!std::isfinite(x) || !std::isfinite(y) || x == 0.0) return std::pow(x, y);
  const bool integer = std::floor(y) == y;
  if (integer && std::fabs(y) <= kMaxIntegerExponent) {
    const Double2 p = pow_int(std::fabs(x), y);
    const double magnitude = p.hi + p.lo;
    if (!std::isfinite(magnitude) || magnitude < kMinAccurateResult) return std::pow(x, y);
    const bool negative = x < 0.0 && std::fmod(y, 2.0) != 0.0;
    return negative ? -magnitude : magnitude;
  }
  if (x < 0.0) return std::pow(x, y);
  const Double2 exponent = mul(log(x), y);
  if (!(std::fabs(exponent.hi) < kMaxExpArgument)) return std::pow(x, y);
  const Double2 p = exp(exponent);
  const double result = p.hi + p.lo;
  return (result < kMinAccurateResult) ? std::pow(x, y) : result;
}

}  // namespace dd
}  // namespace schedx
