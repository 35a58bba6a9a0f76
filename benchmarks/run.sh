#!/usr/bin/env bash
# The CPU benchmark (`make bench`): torch's scheduler step() against schedx's and the C floor, then
# the report. Writes benchmarks/results/cpu.json, cpu.md and cpu-speedup.png. Run from anywhere;
# extra arguments go to pytest (e.g. -k OneCycleLR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
start=$SECONDS
"$PY" -m pytest benchmarks/bench_cpu.py -q -p no:randomly -p no:cacheprovider \
    --benchmark-json=benchmarks/results/cpu.json \
    --benchmark-columns=median,mean,min,rounds,iterations --benchmark-sort=name "$@"
# pytest-benchmark's JSON also holds every round's raw time (~6 MB): keep the statistics only.
"$PY" -c 'import json, sys
path = sys.argv[1]
with open(path) as f:
    data = json.load(f)
for bench in data["benchmarks"]:
    bench["stats"].pop("data", None)
with open(path, "w") as f:
    json.dump(data, f, indent=1)' benchmarks/results/cpu.json
"$PY" benchmarks/report.py benchmarks/results/cpu.json
echo "==> [bench] done in $((SECONDS - start)) s"
