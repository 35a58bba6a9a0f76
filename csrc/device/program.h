// Tensor-LR mode: a scheduler (or a composite of up to kMaxStages of them) as a "program" over arrays,
// run by one host loop (CPU tensors, device/program_cpu.cpp) or one CUDA launch (engine_cuda.cu).
//
// Everything a step needs lives in memory the program points to: every group's LR tensor (through a
// pointer table), the step counters, the schedule's mutable state, the per-group hyperparameters and
// each stage's `_last_lr`. Nothing is passed per step, so the same launch can be captured in a CUDA
// graph and replayed, each replay advancing the schedule.
//
// A step is split as in formulas.h: `decide_stage` does the per-step part once (branch, transcendental
// coefficients, the new counters), `apply_stage` the per-group arithmetic. Both call formulas.h, so the
// math is the float path's.
//
// LRs are computed in double, except the per-group rules of a float32 LR tensor (its `lr * c`,
// `base_lr * c` and cosine rules), which are torch's float32 tensor arithmetic (apply_rule_to_group).
// Rules computed in double from float bounds (OneCycleLR, CyclicLR) keep values a float32 tensor
// cannot hold, so each group has a double `shadow` of the value last written: while the tensor still
// holds that value (rounded), the recursion continues from the shadow; when someone else wrote the
// tensor, from the tensor, as torch reads `group["lr"]`.
#pragma once

#include <cstdint>

#include "rules/expr.h"
#include "rules/formulas.h"

namespace schedx {

constexpr int kMaxStages = 4;
constexpr int kMaxMilestones = 16;
constexpr int kMaxStageParams = 2 + 5 * kMaxOneCyclePhases;  // the longest params tuple: OneCycle's
constexpr int kMaxValueRows = 5;
constexpr int kMaxSchedules = 4;  // distinct compiled schedules of one Schedule stage

// The families that have a program (kinds.h): their stages, composed as below.
SCHEDX_HD constexpr bool has_program(Family family) {
  return family == Family::Plan || family == Family::OneCycle || family == Family::Cyclic ||
         family == Family::Plateau || family == Family::Schedule;
}

#define SCHEDX_COMPOSITIONS(X) X(Single) X(Chained) X(Sequential)
enum class Composition : int32_t { SCHEDX_COMPOSITIONS(SCHEDX_ENUMERATOR) };

// Stage flags.
constexpr int32_t kCycleMomentum = 1;  // OneCycleLR / CyclicLR write momentum (tensors)
constexpr int32_t kAnnealCos = 2;      // OneCycleLR: cosine annealing (else linear)
constexpr int32_t kScaleByCycle = 4;   // CyclicLR: scale_mode == "cycle"
constexpr int32_t kHasClosedForm = 8;  // the class has _get_closed_form_lr (SequentialLR's hand-over)
constexpr int32_t kNoStepCount = 16;   // its step() leaves _step_count (CosineAnnealingWarmRestarts)
constexpr int32_t kScalesLr = 32;      // Schedule: lr * factor (MultiplicativeLR), else base_lr * factor

// Rows of Stage::values (n_groups doubles each), by family.
// OneCycle's rows are the group keys its phases name, in the order the Python layer lists them
// (`_ONE_CYCLE_ROWS`); OneCycleParams says which rows each phase anneals between.
namespace row {
constexpr int kBaseLr = 0;  // Plan
constexpr int kCyclicBaseLr = 0, kCyclicMaxLr = 1, kCyclicBaseMom = 2, kCyclicMaxMom = 3;
constexpr int kPlateauMinLr = 0;
constexpr int kScheduleBaseLr = 0, kScheduleIndex = 1;  // Schedule: the group's compiled schedule
}  // namespace row

// Mutable per-stage state (Stage::state).
namespace state {
constexpr int kWarmTCur = 0, kWarmTI = 1;
constexpr int kPlateauBest = 0, kPlateauBad = 1, kPlateauCooldownCounter = 2;
constexpr int kSize = 3;
}  // namespace state

// Program::counters: the composite's own counters, the sticky status, and the block barrier.
namespace counter {
constexpr int kLastEpoch = 0, kStepCount = 1, kStatus = 2, kStatusEpoch = 3, kBlocksDone = 4;
constexpr int kSize = 5;
}  // namespace counter

// What a run does. Advance: a plain step (the counters advance, as in torch's step()). AtCurrent /
// AtCurrentClosedForm: the rule at the counters as they are, once torch's own step() has advanced them
// on the host (the first step of a scheduler, the deprecated step(epoch), a step right after a change
// that rebuilt the program): torch's get_lr() / _get_closed_form_lr().
#define SCHEDX_RUN_MODES(X) X(Advance) X(AtCurrent) X(AtCurrentClosedForm)
enum class RunMode : int32_t { SCHEDX_RUN_MODES(SCHEDX_ENUMERATOR) };

// Program::counters[kStatus]: why a step wrote nothing (the first failure is kept).
constexpr int64_t kStatusOk = 0;
constexpr int64_t kStatusArithmetic = 1;   // Python's arithmetic would raise (ZeroDivisionError, ...)
constexpr int64_t kStatusOneCycleEnd = 2;  // OneCycleLR stepped past total_steps
constexpr int64_t kStatusSchedule = 3;     // a compiled schedule failed (expr.h)

// A stage's settings, one struct per family, as unpack_params reads them from the params tuple the
// Python layer's `_tensor_stage` builds (in the order of the fields). Rows (`row` above) and state
// (`state`) hold the rest: what is per group, and what a step changes.
struct PlanParams {
  // kinds.h's settings, but those derived from the step: MultiStepLR's count (from `milestones`),
  // CosineAnnealingWarmRestarts' T_cur and T_i (from state).
  double settings[kMaxSettings];
  double t_mult;          // CosineAnnealingWarmRestarts
  int32_t n_milestones;   // MultiStepLR: its milestones with repeats, sorted
  double milestones[kMaxMilestones];
};

struct OneCycleParams {
  double total_steps;
  int32_t n_phases;
  double end_step[kMaxOneCyclePhases];
  // Per phase, the rows it anneals between.
  int32_t start_lr[kMaxOneCyclePhases], end_lr[kMaxOneCyclePhases];
  int32_t start_momentum[kMaxOneCyclePhases], end_momentum[kMaxOneCyclePhases];
};

struct CyclicParams {
  double total_size, step_ratio;
  CyclicMode mode;
  double gamma;  // ExpRange
};

struct PlateauParams {
  PlateauCriterion criterion;
  double threshold, patience;
  int64_t cooldown;
  double factor, eps;
};

struct ScheduleParams {
  int32_t n_schedules;  // LambdaLR's compiled lambdas, ScheduleLR's schedules, each once
  ExprCode schedules[kMaxSchedules];
};

struct Stage {
  Family family;
  Kind kind;  // Plan
  int32_t flags;
  union {
    PlanParams plan;
    OneCycleParams one_cycle;
    CyclicParams cyclic;
    PlateauParams plateau;
    ScheduleParams schedule;
  };
  int64_t* counters;     // [last_epoch, step_count]
  double* state;         // state::kSize values
  const double* values;  // kMaxValueRows rows of n_groups
  double* last_lr;       // n_groups: this stage's _last_lr
};

// The params tuple of a stage (its floats in `p`, `n` of them) into its family's struct; false when
// a value is out of its range. Schedules and milestones come in tuples of their own (program_cpu.cpp).
inline bool unpack_params(const double* p, Stage* st) {
  auto row_of = [](double v, int32_t* out) {
    *out = static_cast<int32_t>(v);
    return v >= 0 && v < kMaxValueRows && *out == v;
  };
  switch (st->family) {
    case Family::Plan: {
      PlanParams& plan = st->plan;
      for (int k = 0; k < kMaxSettings; ++k) plan.settings[k] = p[k];
      plan.t_mult = p[kMaxSettings];
      return true;
    }
    case Family::OneCycle: {
      OneCycleParams& oc = st->one_cycle;
      oc.total_steps = p[0];
      oc.n_phases = static_cast<int32_t>(p[1]);
      if (!(p[1] >= 1 && p[1] <= kMaxOneCyclePhases && oc.n_phases == p[1])) return false;
      const double* column = p + 2;
      for (int32_t k = 0; k < kMaxOneCyclePhases; ++k) {
        oc.end_step[k] = column[k];
        if (!row_of(column[kMaxOneCyclePhases + k], &oc.start_lr[k]) ||
            !row_of(column[2 * kMaxOneCyclePhases + k], &oc.end_lr[k]) ||
            !row_of(column[3 * kMaxOneCyclePhases + k], &oc.start_momentum[k]) ||
            !row_of(column[4 * kMaxOneCyclePhases + k], &oc.end_momentum[k]))
          return false;
      }
      return true;
    }
    case Family::Cyclic: {
      const int32_t mode = static_cast<int32_t>(p[2]);
      st->cyclic = {p[0], p[1], static_cast<CyclicMode>(mode), p[3]};
      return p[2] >= 0 && p[2] < kNumCyclicModes && mode == p[2];
    }
    case Family::Plateau: {
      const int32_t criterion = static_cast<int32_t>(p[0]);
      st->plateau = {static_cast<PlateauCriterion>(criterion), p[1], p[2], static_cast<int64_t>(p[3]),
                     p[4], p[5]};
      return p[0] >= 0 && p[0] < kNumPlateauCriteria && criterion == p[0];
    }
    default: return true;
  }
}

struct Program {
  int64_t n_groups;
  int32_t n_stages;
  Composition composition;
  int32_t n_seq_milestones;
  int64_t seq_milestones[kMaxStages];
  int64_t* counters;         // counter::kSize
  // CUDA programs: host memory the device can write (pinned, mapped), where a failing step also
  // leaves its status and epoch, so that the host sees the failure at its next step without a
  // synchronisation. Null for CPU programs, whose run returns the status.
  int64_t* status_host;
  void* const* lr;           // n_groups pointers to float32 / float64 scalars
  const int8_t* lr_is_f64;   // n_groups
  double* shadow;            // n_groups: the last value written, in double
  void* const* momentum;     // n_groups pointers (null when no stage writes momentum)
  const int8_t* momentum_is_f64;
  const void* metric;        // ReduceLROnPlateau: the metric tensor of this step
  int32_t metric_is_f64;
  RunMode mode;              // of this run
  int32_t is_initial;        // AtCurrent: torch's `_is_initial` (the step made at construction)
  Stage stages[kMaxStages];
};

// What one stage does this step, decided once and applied to every group: per family,
struct OneCycleStep {
  int32_t phase;
  double pct;  // how far into the phase: cos(pi * pct) + 1 when annealing by cos, else pct
};

struct CyclicStep {
  double scale_factor;  // the position in the cycle
  double scale;         // the built-in scale function's value
};

struct PlateauStep {
  bool reduce;
};

struct ScheduleStep {
  bool keep;  // MultiplicativeLR's construction step: the LRs stay
  double factors[kMaxSchedules];  // each compiled schedule's value
};

struct StageStep {
  bool active;
  bool ok;
  int64_t status;
  union {
    StepPlan plan;
    OneCycleStep one_cycle;
    CyclicStep cyclic;
    PlateauStep plateau;
    ScheduleStep schedule;
  };
  int64_t last_epoch;  // the stage's counters after the step
  int64_t step_count;
  double state[state::kSize];
};

struct ProgramStep {
  StageStep stages[kMaxStages];
  bool ok;
  int64_t status;
  int64_t status_epoch;  // the failing stage's epoch
  int64_t last_epoch;  // the composite's counters after the step
  int64_t step_count;
};

SCHEDX_HD double load_scalar(const void* p, bool is_f64) {
  return is_f64 ? *static_cast<const double*>(p) : static_cast<double>(*static_cast<const float*>(p));
}

SCHEDX_HD void store_scalar(void* p, bool is_f64, double v) {
  if (is_f64) {
    *static_cast<double*>(p) = v;
  } else {
    *static_cast<float*>(p) = static_cast<float>(v);
  }
}

// The LR a step starts from: the shadow while the tensor still holds it, else the tensor's value.
SCHEDX_HD double current_lr(const Program& prog, int64_t i) {
  const bool is_f64 = prog.lr_is_f64[i] != 0;
  const double stored = load_scalar(prog.lr[i], is_f64);
  const double shadow = prog.shadow[i];
  const double shadow_stored = is_f64 ? shadow : static_cast<double>(static_cast<float>(shadow));
  return (stored == shadow_stored) ? shadow : stored;
}

// MultiStepLR's `milestones[epoch]` (the count of `epoch` among them) or, for the closed form, the
// number of milestones at or before `epoch` (bisect_right).
SCHEDX_HD double milestone_count(const PlanParams& plan, double epoch, bool at_or_before) {
  double count = 0.0;
  for (int32_t k = 0; k < plan.n_milestones; ++k)
    if (at_or_before ? plan.milestones[k] <= epoch : plan.milestones[k] == epoch) count += 1.0;
  return count;
}

// A Plan stage: torch's plain step (recursive), or SequentialLR's hand-over `_update_lr(0)` (the
// closed form where the class has one).
SCHEDX_HD void decide_plan(const Stage& st, bool advance, bool closed_form, bool is_initial,
                           StageStep* d) {
  const PlanParams& plan = st.plan;
  double h[kMaxSettings] = {plan.settings[0], plan.settings[1], plan.settings[2]};
  const double epoch = static_cast<double>(d->last_epoch);
  if (st.kind == Kind::MultiStepLR) h[0] = milestone_count(plan, epoch, closed_form);
  if (st.kind == Kind::CosineAnnealingWarmRestarts) {
    // A plain step does the restart bookkeeping of torch's step(); a hand-over (`_update_lr(0)`)
    // and a run at the current counters do not.
    double t_cur = st.state[state::kWarmTCur], t_i = st.state[state::kWarmTI];
    if (advance && !advance_warm_restart(&t_cur, &t_i, plan.t_mult)) return;
    d->state[state::kWarmTCur] = t_cur;
    d->state[state::kWarmTI] = t_i;
    h[0] = t_cur;
    h[1] = t_i;
  }
  if (closed_form && (st.flags & kHasClosedForm)) {
    d->plan = plan_closed_form_step(st.kind, epoch, h);
  } else {
    d->plan = plan_recursive_step(st.kind, epoch, d->step_count, is_initial, h);
  }
  d->ok = d->plan.ok;
}

SCHEDX_HD void decide_one_cycle(const Stage& st, StageStep* d) {
  const OneCycleParams& oc = st.one_cycle;
  const double step = static_cast<double>(d->last_epoch);
  if (step > oc.total_steps) {
    d->ok = false;
    d->status = kStatusOneCycleEnd;
    return;
  }
  const OneCyclePhase phase = one_cycle_phase(step, oc.end_step, oc.n_phases);
  d->one_cycle = {phase.index, phase.pct};
  d->ok = phase.ok && (!(st.flags & kAnnealCos) || one_cycle_cos_out(phase.pct, &d->one_cycle.pct));
}

SCHEDX_HD void decide_cyclic(const Stage& st, StageStep* d) {
  const CyclicParams& cyc = st.cyclic;
  const double epoch = static_cast<double>(d->last_epoch);
  const CyclePosition pos = cyclic_position(epoch, cyc.total_size, cyc.step_ratio);
  d->cyclic.scale_factor = pos.scale_factor;
  d->ok = pos.ok && cyclic_builtin_scale(cyc.mode, cyc.gamma,
                                         (st.flags & kScaleByCycle) ? pos.cycle : epoch,
                                         &d->cyclic.scale);
}

SCHEDX_HD void decide_plateau(const Stage& st, double metric, StageStep* d) {
  PlateauState s{st.state[state::kPlateauBest],
                 static_cast<int64_t>(st.state[state::kPlateauBad]),
                 static_cast<int64_t>(st.state[state::kPlateauCooldownCounter])};
  const PlateauParams& plateau = st.plateau;
  PlateauSettings settings{plateau.criterion, plateau.threshold, plateau.patience, plateau.cooldown};
  d->plateau.reduce = plateau_observe(&s, settings, metric);
  if (d->plateau.reduce) plateau_after_reduction(&s, settings);
  d->state[state::kPlateauBest] = s.best;
  d->state[state::kPlateauBad] = static_cast<double>(s.num_bad_epochs);
  d->state[state::kPlateauCooldownCounter] = static_cast<double>(s.cooldown_counter);
  d->ok = true;
}

// LambdaLR's / MultiplicativeLR's get_lr() with compiled lambdas: each schedule's factor at the
// stage's epoch. MultiplicativeLR's construction step keeps the LRs (`keep`), as torch's does.
SCHEDX_HD void decide_schedule(const Stage& st, bool keep, StageStep* d) {
  d->ok = true;
  d->schedule.keep = keep;
  if (keep) return;
  for (int32_t k = 0; k < st.schedule.n_schedules; ++k) {
    PyNum value;
    if (!eval_expr(st.schedule.schedules[k], d->last_epoch, 0.0, &value)) {
      d->ok = false;
      d->status = kStatusSchedule;
      return;
    }
    d->schedule.factors[k] = value.v;
  }
}

// One stage's step. Advancing, its counters advance; a hand-over (`_update_lr(0)`) sets last_epoch to 0
// and leaves the step count; a run at the current counters leaves both.
SCHEDX_HD StageStep decide_stage(const Program& prog, const Stage& st, bool handover) {
  StageStep d{};
  d.active = true;
  d.ok = false;
  d.status = kStatusArithmetic;
  const bool advance = prog.mode == RunMode::Advance && !handover;
  const bool closed_form = handover || prog.mode == RunMode::AtCurrentClosedForm;
  d.last_epoch = handover ? 0 : (advance ? st.counters[0] + 1 : st.counters[0]);
  d.step_count = (advance && !(st.flags & kNoStepCount)) ? st.counters[1] + 1 : st.counters[1];
  for (int k = 0; k < state::kSize; ++k) d.state[k] = st.state[k];
  switch (st.family) {
    case Family::Plan:
      decide_plan(st, advance, closed_form, !advance && !handover && prog.is_initial, &d);
      break;
    case Family::OneCycle: decide_one_cycle(st, &d); break;
    case Family::Cyclic: decide_cyclic(st, &d); break;
    case Family::Plateau:
      decide_plateau(st, load_scalar(prog.metric, prog.metric_is_f64 != 0), &d);
      break;
    case Family::Schedule:
      decide_schedule(st, (st.flags & kScalesLr) && !advance && !handover && prog.is_initial, &d);
      break;
    default: break;  // no program (has_program)
  }
  if (d.ok) d.status = kStatusOk;
  return d;
}

// SequentialLR.step: the child whose interval holds the new epoch steps; at a milestone it is
// restarted with `_update_lr(0)`.
SCHEDX_HD void decide_sequential(const Program& prog, int64_t epoch, ProgramStep* s) {
  int32_t idx = 0;
  while (idx < prog.n_seq_milestones && prog.seq_milestones[idx] <= epoch) ++idx;
  const bool handover = idx > 0 && prog.seq_milestones[idx - 1] == epoch;
  s->stages[idx] = decide_stage(prog, prog.stages[idx], handover);
}

SCHEDX_HD ProgramStep decide_program(const Program& prog) {
  ProgramStep s{};
  const int64_t advance = prog.mode == RunMode::Advance ? 1 : 0;
  s.last_epoch = prog.counters[counter::kLastEpoch] + advance;
  s.step_count = prog.counters[counter::kStepCount] + advance;
  // After a failed step the program stops, as the training loop would have stopped at torch's raise.
  if (prog.counters[counter::kStatus] != kStatusOk) {
    s.ok = false;
    s.status = prog.counters[counter::kStatus];
    return s;
  }
  if (prog.composition == Composition::Sequential) {
    decide_sequential(prog, s.last_epoch, &s);
  } else {
    for (int32_t k = 0; k < prog.n_stages; ++k) s.stages[k] = decide_stage(prog, prog.stages[k], false);
  }
  s.ok = true;
  s.status = kStatusOk;
  for (int32_t k = 0; k < prog.n_stages; ++k) {
    if (s.stages[k].active && !s.stages[k].ok) {
      s.ok = false;
      s.status = s.stages[k].status;
      s.status_epoch = s.stages[k].last_epoch;
      break;
    }
  }
  return s;
}

struct GroupValues {
  double lr;
  double momentum;
  bool has_momentum;
};

SCHEDX_HD double stage_value(const Program& prog, const Stage& st, int row_index, int64_t i) {
  return st.values[static_cast<int64_t>(row_index) * prog.n_groups + i];
}

SCHEDX_HD void apply_one_cycle(const Program& prog, const Stage& st, const StageStep& d, int64_t i,
                               GroupValues* g) {
  const OneCycleParams& oc = st.one_cycle;
  const int32_t phase = d.one_cycle.phase;
  auto anneal = [&](int32_t start_row, int32_t end_row) {
    const double start = stage_value(prog, st, start_row, i);
    const double end = stage_value(prog, st, end_row, i);
    return (st.flags & kAnnealCos) ? one_cycle_anneal_cos(start, end, d.one_cycle.pct)
                                   : one_cycle_anneal_linear(start, end, d.one_cycle.pct);
  };
  g->lr = anneal(oc.start_lr[phase], oc.end_lr[phase]);
  if (st.flags & kCycleMomentum) {
    g->momentum = anneal(oc.start_momentum[phase], oc.end_momentum[phase]);
    g->has_momentum = true;
  }
}

SCHEDX_HD void apply_cyclic(const Program& prog, const Stage& st, const StageStep& d, int64_t i,
                            GroupValues* g) {
  g->lr = cyclic_lr(stage_value(prog, st, row::kCyclicBaseLr, i),
                    stage_value(prog, st, row::kCyclicMaxLr, i), d.cyclic.scale_factor, d.cyclic.scale);
  if (st.flags & kCycleMomentum) {
    g->momentum = cyclic_momentum(stage_value(prog, st, row::kCyclicBaseMom, i),
                                  stage_value(prog, st, row::kCyclicMaxMom, i), d.cyclic.scale_factor,
                                  d.cyclic.scale);
    g->has_momentum = true;
  }
}

// A plan's rule for group i, in its LR tensor's arithmetic, as torch's tensor path computes it (a
// float32 LR's base_lr is a float32 tensor too: program_for checks it).
SCHEDX_HD double apply_rule_to_group(const Program& prog, int64_t i, const StepPlan& plan, double lr,
                                     double base_lr) {
  if (prog.lr_is_f64[i] != 0) return apply_group_rule(plan, lr, base_lr);
  return static_cast<double>(
      apply_group_rule_in<float>(plan, static_cast<float>(lr), static_cast<float>(base_lr)));
}

SCHEDX_HD void apply_stage(const Program& prog, const Stage& st, const StageStep& d, int64_t i,
                           GroupValues* g) {
  switch (st.family) {
    case Family::Plan:
      g->lr = apply_rule_to_group(prog, i, d.plan, g->lr, stage_value(prog, st, row::kBaseLr, i));
      break;
    case Family::OneCycle: apply_one_cycle(prog, st, d, i, g); break;
    case Family::Cyclic: apply_cyclic(prog, st, d, i, g); break;
    case Family::Plateau:
      if (d.plateau.reduce) {
        bool write = false;
        const double reduced =
            plateau_reduced_lr(g->lr, st.plateau.factor, stage_value(prog, st, row::kPlateauMinLr, i),
                               st.plateau.eps, &write);
        if (write) g->lr = reduced;
      }
      break;
    case Family::Schedule: {
      const double index = stage_value(prog, st, row::kScheduleIndex, i);
      if (d.schedule.keep || !(index >= 0.0 && index < st.schedule.n_schedules)) break;
      const double factor = d.schedule.factors[static_cast<int32_t>(index)];
      const bool scales_lr = (st.flags & kScalesLr) != 0;
      g->lr = apply_rule_to_group(prog, i,
                                  plan_of(scales_lr ? GroupRule::ScaleLr : GroupRule::ScaleBase, factor, true),
                                  g->lr, stage_value(prog, st, row::kScheduleBaseLr, i));
      break;
    }
    default: break;  // no program (has_program)
  }
}

// Group i's share of a decided step: every active stage in order, then the writes.
SCHEDX_HD void step_group(const Program& prog, const ProgramStep& s, int64_t i) {
  GroupValues g{current_lr(prog, i), 0.0, false};
  for (int32_t k = 0; k < prog.n_stages; ++k) {
    if (!s.stages[k].active) continue;
    apply_stage(prog, prog.stages[k], s.stages[k], i, &g);
    prog.stages[k].last_lr[i] = g.lr;
  }
  store_scalar(prog.lr[i], prog.lr_is_f64[i] != 0, g.lr);
  prog.shadow[i] = g.lr;
  if (g.has_momentum) store_scalar(prog.momentum[i], prog.momentum_is_f64[i] != 0, g.momentum);
}

// The counters and state after the step: written once, after every group has read the old ones.
SCHEDX_HD void commit_step(const Program& prog, const ProgramStep& s) {
  if (!s.ok) {
    if (prog.counters[counter::kStatus] == kStatusOk) {
      prog.counters[counter::kStatus] = s.status;
      prog.counters[counter::kStatusEpoch] = s.status_epoch;
      if (prog.status_host != nullptr) {
        prog.status_host[1] = s.status_epoch;
        prog.status_host[0] = s.status;
      }
    }
    return;
  }
  prog.counters[counter::kLastEpoch] = s.last_epoch;
  prog.counters[counter::kStepCount] = s.step_count;
  for (int32_t k = 0; k < prog.n_stages; ++k) {
    const StageStep& d = s.stages[k];
    if (!d.active) continue;
    const Stage& st = prog.stages[k];
    st.counters[0] = d.last_epoch;
    st.counters[1] = d.step_count;
    for (int j = 0; j < state::kSize; ++j) st.state[j] = d.state[j];
  }
}

}  // namespace schedx
