// Custom schedules (schedx/schedules/) and traced LambdaLR lambdas, run by the engine: a small stack
// machine whose every operation is the Python operation of the same name, with Python's semantics for
// ints and floats, so that its value is the value Python computes for the same expression.
//
// A program is a list of (op, arg) pairs and a table of constants, built by schedx/schedules/_expression.py. It
// reads the step (an int) and, for schedules that give an LR rather than a factor, the group's
// initial LR. Jumps go forward only, so every run ends after at most one pass over the code.
//
// Ints are held in doubles and must stay below 2**53 in magnitude, where doubles hold them exactly and
// int-float conversions and comparisons are exact, as Python's are. A value outside that range, like
// every operation on which Python would raise (division by zero, a math domain error, an overflow),
// makes the run fail: the host then computes the step in Python, which gives Python's value or error.
#pragma once

#include <cmath>
#include <cstdint>

#include "formulas.h"

namespace schedx {

// Named as Python names the operation (schedx/schedules/_expression.py: Truediv is "truediv", ToFloat "to_float").
#define SCHEDX_EXPR_OPS(X)                                                        \
  X(ConstFloat)  /* arg: index into the constants */                               \
  X(ConstInt)    /* arg: index into the constants (an integral value) */           \
  X(Step)                                                                          \
  X(BaseLr)                                                                        \
  X(Add)         /* binary: Add .. Ne */                                           \
  X(Sub)                                                                           \
  X(Mul)                                                                           \
  X(Truediv)                                                                       \
  X(Floordiv)                                                                      \
  X(Mod)                                                                           \
  X(Pow)                                                                           \
  X(Lt)                                                                            \
  X(Le)                                                                            \
  X(Gt)                                                                            \
  X(Ge)                                                                            \
  X(Eq)                                                                            \
  X(Ne)                                                                            \
  X(Neg)         /* unary: Neg .. Sqrt */                                          \
  X(Abs)                                                                           \
  X(Not)                                                                           \
  X(ToFloat)     /* float(x) */                                                    \
  X(ToInt)       /* int(x) */                                                      \
  X(Floor)       /* math.floor */                                                  \
  X(Ceil)        /* math.ceil */                                                   \
  X(Cos)                                                                           \
  X(Sin)                                                                           \
  X(Tan)                                                                           \
  X(Exp)                                                                           \
  X(Log)                                                                           \
  X(Log2)                                                                          \
  X(Log10)                                                                         \
  X(Sqrt)                                                                          \
  X(JumpIfFalse) /* arg: target (pops the condition) */                            \
  X(Jump)        /* arg: target */

enum class ExprOp : int32_t { SCHEDX_EXPR_OPS(SCHEDX_ENUMERATOR) NumOps };

constexpr int kMaxExprStack = 32;
constexpr int32_t kMaxExprInstructions = 4096;

struct ExprCode {
  const int32_t* code;  // n_instructions (op, arg) pairs
  int32_t n_instructions;
  const double* consts;
  int32_t n_consts;
};

// A Python int or float.
struct PyNum {
  double v;
  bool is_int;
};


// An int result (`+ 0.0`: Python's ints have no negative zero).
SCHEDX_HD bool make_int(double v, PyNum* out) {
  *out = PyNum{v + 0.0, true};
  return exact_int(v);
}

SCHEDX_HD PyNum make_float(double v) { return PyNum{v, false}; }

SCHEDX_HD PyNum make_bool(bool b) { return PyNum{b ? 1.0 : 0.0, true}; }

// `a ** b` for ints, b >= 0: exact, or false once the result leaves the exact range.
SCHEDX_HD bool int_pow(double a, double b, PyNum* out) {
  double result = 1.0;
  for (double k = 0.0; k < b; k += 1.0) {
    result *= a;
    if (!exact_int(result)) return false;
    if (result == 0.0 || result == 1.0) break;
    if (result == -1.0) {
      result = (std::fmod(b, 2.0) == 0.0) ? 1.0 : -1.0;
      break;
    }
  }
  return make_int(result, out);
}

// Python's binary arithmetic: int op int stays int (except `/`, and `**` with a negative exponent);
// anything with a float is float arithmetic on the converted values.
SCHEDX_HD bool py_binary(ExprOp op, PyNum a, PyNum b, PyNum* out) {
  const bool ints = a.is_int && b.is_int;
  switch (op) {
    case ExprOp::Add: return ints ? make_int(a.v + b.v, out) : (*out = make_float(a.v + b.v), true);
    case ExprOp::Sub: return ints ? make_int(a.v - b.v, out) : (*out = make_float(a.v - b.v), true);
    case ExprOp::Mul: return ints ? make_int(a.v * b.v, out) : (*out = make_float(a.v * b.v), true);
    case ExprOp::Truediv: {
      double q;
      if (!py_div(a.v, b.v, &q)) return false;
      *out = make_float(q);
      return true;
    }
    case ExprOp::Floordiv:
      if (b.v == 0.0) return false;
      return ints ? make_int(py_floordiv(a.v, b.v), out)
                  : (*out = make_float(py_floordiv(a.v, b.v)), true);
    case ExprOp::Mod:
      if (b.v == 0.0) return false;
      return ints ? make_int(py_mod(a.v, b.v), out) : (*out = make_float(py_mod(a.v, b.v)), true);
    case ExprOp::Pow: {
      if (ints && b.v >= 0.0) return int_pow(a.v, b.v, out);
      double p;
      if (!py_pow(a.v, b.v, &p)) return false;
      *out = make_float(p);
      return true;
    }
    case ExprOp::Lt: *out = make_bool(a.v < b.v); return true;
    case ExprOp::Le: *out = make_bool(a.v <= b.v); return true;
    case ExprOp::Gt: *out = make_bool(a.v > b.v); return true;
    case ExprOp::Ge: *out = make_bool(a.v >= b.v); return true;
    case ExprOp::Eq: *out = make_bool(a.v == b.v); return true;
    case ExprOp::Ne: *out = make_bool(a.v != b.v); return true;
    default: return false;
  }
}

// The C library's function for a math-module op (on the device, CUDA's, except cos: formulas.h).
SCHEDX_HD double libm_unary(ExprOp op, double x) {
  switch (op) {
    case ExprOp::Cos: return libm_cos(x);
    case ExprOp::Sin: return std::sin(x);
    case ExprOp::Tan: return std::tan(x);
    case ExprOp::Exp: return std::exp(x);
    case ExprOp::Log: return std::log(x);
    case ExprOp::Log2: return std::log2(x);
    case ExprOp::Log10: return std::log10(x);
    default: return std::sqrt(x);
  }
}

// math.floor / math.ceil / int(): an int, where Python raises for infinities and NaN.
SCHEDX_HD bool py_to_int(double rounded, PyNum* out) {
  if (!std::isfinite(rounded)) return false;
  return make_int(rounded, out);
}

SCHEDX_HD bool py_unary(ExprOp op, PyNum a, PyNum* out) {
  switch (op) {
    case ExprOp::Neg: return a.is_int ? make_int(-a.v, out) : (*out = make_float(-a.v), true);
    case ExprOp::Abs: *out = PyNum{std::fabs(a.v), a.is_int}; return true;
    case ExprOp::Not: *out = make_bool(a.v == 0.0); return true;
    case ExprOp::ToFloat: *out = make_float(a.v); return true;
    case ExprOp::ToInt: return py_to_int(std::trunc(a.v), out);
    case ExprOp::Floor: return py_to_int(std::floor(a.v), out);
    case ExprOp::Ceil: return py_to_int(std::ceil(a.v), out);
    default: {
      // CPython's math_1: a NaN from a non-NaN, or an infinity from a finite value, raises.
      const double r = libm_unary(op, a.v);
      if ((std::isnan(r) && !std::isnan(a.v)) || (std::isinf(r) && std::isfinite(a.v))) return false;
      *out = make_float(r);
      return true;
    }
  }
}

SCHEDX_HD bool is_binary(ExprOp op) { return op >= ExprOp::Add && op <= ExprOp::Ne; }
SCHEDX_HD bool is_unary(ExprOp op) { return op >= ExprOp::Neg && op <= ExprOp::Sqrt; }

// The program's value at `step` for a group whose initial LR is `base_lr`. False where Python would
// raise, where a value leaves the exact int range, and for malformed code (checked as it runs: the
// code comes from Python and must never make the engine read out of bounds).
SCHEDX_HD bool eval_expr(const ExprCode& e, int64_t step, double base_lr, PyNum* result) {
  PyNum stack[kMaxExprStack];
  int sp = 0;
  if (e.n_instructions < 0 || e.n_instructions > kMaxExprInstructions) return false;
  for (int32_t pc = 0; pc < e.n_instructions; ++pc) {
    const ExprOp op = static_cast<ExprOp>(e.code[2 * pc]);
    const int32_t arg = e.code[2 * pc + 1];
    switch (op) {
      case ExprOp::ConstFloat:
      case ExprOp::ConstInt:
        if (sp == kMaxExprStack || arg < 0 || arg >= e.n_consts) return false;
        stack[sp++] = PyNum{e.consts[arg], op == ExprOp::ConstInt};
        continue;
      case ExprOp::Step:
        if (sp == kMaxExprStack || !make_int(static_cast<double>(step), &stack[sp])) return false;
        ++sp;
        continue;
      case ExprOp::BaseLr:
        if (sp == kMaxExprStack) return false;
        stack[sp++] = make_float(base_lr);
        continue;
      case ExprOp::JumpIfFalse:
        if (sp < 1 || arg <= pc || arg > e.n_instructions) return false;
        --sp;
        if (stack[sp].v == 0.0) pc = arg - 1;
        continue;
      case ExprOp::Jump:
        if (arg <= pc || arg > e.n_instructions) return false;
        pc = arg - 1;
        continue;
      default: break;
    }
    if (is_binary(op)) {
      if (sp < 2 || !py_binary(op, stack[sp - 2], stack[sp - 1], &stack[sp - 2])) return false;
      --sp;
    } else if (is_unary(op)) {
      if (sp < 1 || !py_unary(op, stack[sp - 1], &stack[sp - 1])) return false;
    } else {
      return false;
    }
  }
  if (sp != 1) return false;
  *result = stack[0];
  return true;
}

}  // namespace schedx
