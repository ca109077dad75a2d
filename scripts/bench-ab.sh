#!/usr/bin/env bash
# bench-ab.sh - two moe-bench binaries on the same file, same run, rounds
# alternating A/B (B/A on even rounds), one repetition each: the way to show
# that a change made the engine faster or no slower on this noisy machine.
#
# Usage: scripts/bench-ab.sh A_BENCH B_BENCH [-m FILE] [-t N] [-p N] [-n N] [-r N] [-- extra moe-bench args]
#   A_BENCH, B_BENCH  two moe-bench executables (e.g. a copy of the old build's and build/moe-bench)
#   -m FILE  model (default: the V2-Lite-shaped Q4_K_M that bench-vs-llamacpp.sh caches)
#   defaults: -t nproc -p 512 -n 128 -r 3
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n '2,11p' "$0"; exit 2; }
a=$1; b=$2; shift 2
threads=$(nproc); n_prompt=512; n_gen=128; rounds=3
model=${MOE_PEER_CACHE:-$HOME/.cache/moe.cpp}/synth/v2lite-seed1.Q4_K_M.gguf
while getopts "m:t:p:n:r:h" opt; do
  case $opt in
    m) model=$OPTARG ;; t) threads=$OPTARG ;; p) n_prompt=$OPTARG ;; n) n_gen=$OPTARG ;; r) rounds=$OPTARG ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ ${1:-} == -- ]] && shift
[[ -f $model ]] || { echo "bench-ab: model '$model' not found (scripts/bench-vs-llamacpp.sh makes it)" >&2; exit 1; }
scripts/recache.sh "$model"  # the same page cache for every engine (see recache.sh)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() { "$1" -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r 1 --json "${@:3}" 2>/dev/null >"$tmp/$2.json"; }
for ((i = 1; i <= rounds; i++)); do
  echo "bench-ab: round $i/$rounds" >&2
  if ((i % 2)); then run "$a" "a.$i" "$@"; run "$b" "b.$i" "$@"; else run "$b" "b.$i" "$@"; run "$a" "a.$i" "$@"; fi
done
python3 - "$tmp" "$rounds" "$model" "$threads" "$a" "$b" <<'PY'
import json, statistics, sys, os
tmp, rounds, model, threads, a_bin, b_bin = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def collect(tag):
    out = {}
    for i in range(1, rounds + 1):
        for r in json.load(open(os.path.join(tmp, f"{tag}.{i}.json"))):
            out.setdefault(r["test"], []).append(r["avg_ts"])
    return out
a, b = collect("a"), collect("b")
print(f"model: {model}\nthreads: {threads}, rounds: {rounds} (alternating)\nA: {a_bin}\nB: {b_bin}\n")
print("| test   | A t/s              | B t/s              | B / A  |")
print("| ------ | ------------------ | ------------------ | ------ |")
sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
for test in a:
    ma, mb = statistics.mean(a[test]), statistics.mean(b[test])
    print(f"| {test:6} | {ma:8.2f} ± {sd(a[test]):6.2f} | {mb:8.2f} ± {sd(b[test]):6.2f} | {mb / ma:5.3f}x |")
PY
