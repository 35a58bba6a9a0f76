// cos correctly rounded, for the device: the CPU engine calls the C library's cos, which rounds the
// exact result correctly but in the rarest cases; CUDA's own cos is off by up to 2 ulp, and torch's
// recursive cosine rules amplify such an error many times near their minimum (a 1-ulp difference in
// cos(pi * t / T) near t = T moves the LR by thousands of ulp). So the kernel computes cos in
// double-double arithmetic (about 100 bits) and rounds once: the C library's result, bit for bit,
// wherever that one is correctly rounded.
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

}  // namespace dd
}  // namespace schedx
