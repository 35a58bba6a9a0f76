// _C.constants(): every number the Python layer shares with the engine, read from the declarations
// (rules/kinds.h, rules/expr.h, rules/formulas.h, device/program.h), so that Python keeps no copy.
#include <initializer_list>
#include <utility>

#include "device/program.h"
#include "py/api.h"

namespace schedx {
namespace {

using NamedValues = std::initializer_list<std::pair<const char*, long long>>;

// out[table] = {name: value, ...}.
bool add_table(PyObject* out, const char* table, NamedValues rows) {
  PyObject* values = PyDict_New();
  bool ok = values != nullptr;
  for (const auto& [name, value] : rows) {
    PyObject* number = ok ? PyLong_FromLongLong(value) : nullptr;
    ok = number != nullptr && PyDict_SetItemString(values, name, number) == 0;
    Py_XDECREF(number);
  }
  ok = ok && PyDict_SetItemString(out, table, values) == 0;
  Py_XDECREF(values);
  return ok;
}

}  // namespace

// An enumerator of the enum `E` in scope, as a (name, value) row.
#define SCHEDX_ROW(name) {#name, static_cast<long long>(E::name)},
// out["Enum"] = every enumerator of `Enum`, from its X-macro list `LIST`.
#define SCHEDX_ENUM_TABLE(Enum, LIST)              \
  [o] {                                            \
    using E = Enum;                                \
    return add_table(o, #Enum, {LIST(SCHEDX_ROW)}); \
  }()

// constants(): every number the Python layer shares with the engine, by table and name: the
// enumerations (Kind, ExprOp, Family, ...), the program's stage flags, rows, state, counters and
// statuses, and the engine's limits. Python reads them here; it keeps no copy.
PyObject* constants(PyObject*, PyObject*) {
  PyObject* o = PyDict_New();
  if (o == nullptr) return nullptr;
  bool ok = SCHEDX_ENUM_TABLE(Kind, SCHEDX_KINDS) && SCHEDX_ENUM_TABLE(ExprOp, SCHEDX_EXPR_OPS) &&
            SCHEDX_ENUM_TABLE(Family, SCHEDX_FAMILIES) &&
            SCHEDX_ENUM_TABLE(Composition, SCHEDX_COMPOSITIONS) &&
            SCHEDX_ENUM_TABLE(RunMode, SCHEDX_RUN_MODES) &&
            SCHEDX_ENUM_TABLE(CyclicMode, SCHEDX_CYCLIC_MODES) &&
            SCHEDX_ENUM_TABLE(PlateauCriterion, SCHEDX_PLATEAU_CRITERIA);
  ok = ok &&
       add_table(o, "StageFlag",
                 {{"CYCLE_MOMENTUM", kCycleMomentum}, {"ANNEAL_COS", kAnnealCos},
                  {"SCALE_BY_CYCLE", kScaleByCycle}, {"HAS_CLOSED_FORM", kHasClosedForm},
                  {"NO_STEP_COUNT", kNoStepCount}, {"SCALES_LR", kScalesLr}}) &&
       add_table(o, "Counter",
                 {{"LAST_EPOCH", counter::kLastEpoch}, {"STEP_COUNT", counter::kStepCount},
                  {"STATUS", counter::kStatus}, {"STATUS_EPOCH", counter::kStatusEpoch},
                  {"BLOCKS_DONE", counter::kBlocksDone}, {"SIZE", counter::kSize}}) &&
       add_table(o, "Row",
                 {{"BASE_LR", row::kBaseLr}, {"CYCLIC_BASE_LR", row::kCyclicBaseLr},
                  {"CYCLIC_MAX_LR", row::kCyclicMaxLr}, {"CYCLIC_BASE_MOMENTUM", row::kCyclicBaseMom},
                  {"CYCLIC_MAX_MOMENTUM", row::kCyclicMaxMom}, {"PLATEAU_MIN_LR", row::kPlateauMinLr},
                  {"SCHEDULE_BASE_LR", row::kScheduleBaseLr}, {"SCHEDULE_INDEX", row::kScheduleIndex}}) &&
       add_table(o, "State",
                 {{"WARM_T_CUR", state::kWarmTCur}, {"WARM_T_I", state::kWarmTI},
                  {"PLATEAU_BEST", state::kPlateauBest}, {"PLATEAU_BAD", state::kPlateauBad},
                  {"PLATEAU_COOLDOWN_COUNTER", state::kPlateauCooldownCounter}}) &&
       add_table(o, "Status",
                 {{"OK", kStatusOk}, {"ARITHMETIC", kStatusArithmetic},
                  {"ONE_CYCLE_END", kStatusOneCycleEnd}, {"SCHEDULE", kStatusSchedule}}) &&
       add_table(o, "Limit",
                 {{"MAX_STAGES", kMaxStages}, {"MAX_MILESTONES", kMaxMilestones},
                  {"MAX_VALUE_ROWS", kMaxValueRows}, {"STATE_SIZE", state::kSize},
                  {"MAX_SCHEDULES", kMaxSchedules}, {"MAX_ONE_CYCLE_PHASES", kMaxOneCyclePhases},
                  {"MAX_EXPR_STACK", kMaxExprStack}, {"MAX_EXPR_INSTRUCTIONS", kMaxExprInstructions},
                  {"MAX_EXACT_INT", static_cast<long long>(kMaxExactInt)}});
  if (!ok) {
    Py_DECREF(o);
    return nullptr;
  }
  return o;
}

#undef SCHEDX_ENUM_TABLE
#undef SCHEDX_ROW

}  // namespace schedx
