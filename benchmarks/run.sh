#!/usr/bin/env bash
# The CPU benchmark (`make bench`): torch's scheduler step() against schedx's and the C floor, timed
# interleaved (bench_cpu.py), then counted under callgrind (callgrind.py, when valgrind is installed),
# then the report. Writes benchmarks/results/cpu.json, callgrind.json, cpu.md and cpu-speedup.png.
# Run from anywhere; extra arguments go to pytest (e.g. -k OneCycleLR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
RESULTS=benchmarks/results
start=$SECONDS

echo "==> [bench] timing: torch, schedx and the floor interleaved, 18 schedulers and 3 transformers schedules (get_scheduler, patched for schedx) x 5 N"
"$PY" -m pytest benchmarks/bench_cpu.py -q -p no:randomly -p no:cacheprovider --benchmark-quiet \
    --benchmark-json="$RESULTS/cpu.json" "$@"
# pytest-benchmark's JSON also holds every round's raw time: keep the statistics only.
"$PY" -c 'import json, sys
path = sys.argv[1]
with open(path) as f:
    data = json.load(f)
for bench in data["benchmarks"]:
    bench["stats"].pop("data", None)
with open(path, "w") as f:
    json.dump(data, f, indent=1)' "$RESULTS/cpu.json"

echo "==> [bench] profile: instructions per step under valgrind's callgrind (about 1.5 min)"
# A profile from an earlier run must not pass for this one's.
rm -f "$RESULTS/callgrind.json"
"$PY" benchmarks/callgrind.py --out "$RESULTS/callgrind.json"

"$PY" benchmarks/report.py "$RESULTS/cpu.json" --profile "$RESULTS/callgrind.json" --out-dir "$RESULTS"
echo "==> [bench] done in $((SECONDS - start)) s"
