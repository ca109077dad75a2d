#!/usr/bin/env bash
# bench-vs-llamacpp.sh - moe.cpp against llama.cpp on the same file, same
# threads, same run: prompt (ppN) and generation (tgN) tokens/s and ratios.
#
# Usage: scripts/bench-vs-llamacpp.sh [options]
#   -m FILE       model (default: a V2-Lite-shaped Q4_K_M made by moe-synth,
#                 cached in $MOE_PEER_CACHE/synth/)
#   -t N          threads for both engines (default: nproc)
#   -p N          prompt tokens (default 512)
#   -n N          generated tokens (default 128)
#   -r N          rounds (default 3); each round runs llama-bench, then
#                 moe-bench (order alternating between rounds), one
#                 repetition each, so drift in the machine hits both alike
#
# The peer is llama.cpp from the node-llama-cpp npm bundle, built (once, cached)
# by scripts/build-llamacpp.sh. moe.cpp is built with `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=$(nproc); n_prompt=512; n_gen=128; rounds=3; model=""
while getopts "m:t:p:n:r:h" opt; do
  case $opt in
    m) model=$OPTARG ;; t) threads=$OPTARG ;; p) n_prompt=$OPTARG ;; n) n_gen=$OPTARG ;; r) rounds=$OPTARG ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
  esac
done
cache=${MOE_PEER_CACHE:-$HOME/.cache/moe.cpp}
peer_bin=$(scripts/build-llamacpp.sh --targets "llama-bench" | tail -1)
make build >/dev/null
if [[ -z $model ]]; then
  model=$cache/synth/v2lite-seed1.Q4_K_M.gguf
  if [[ ! -f $model ]]; then
    mkdir -p "$(dirname "$model")"
    echo "bench: synthesizing $model (V2-Lite shape, Q4_K_M)" >&2
    build/moe-synth --config v2-lite --type Q4_K_M --seed 1 -o "$model"
  fi
fi
[[ -f $model ]] || { echo "bench: model '$model' not found" >&2; exit 1; }
scripts/recache.sh "$model"  # the same page cache for every engine (see recache.sh)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run_llama() { "$peer_bin/llama-bench" -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r 1 -o json 2>/dev/null >"$tmp/llama.$1.json"; }
run_moe() { build/moe-bench -m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r 1 --json >"$tmp/moe.$1.json"; }
for ((i = 1; i <= rounds; i++)); do
  echo "bench: round $i/$rounds" >&2
  if ((i % 2)); then run_llama "$i"; run_moe "$i"; else run_moe "$i"; run_llama "$i"; fi
done
python3 - "$tmp" "$rounds" "$model" "$threads" <<'PY'
import json, statistics, sys, os
tmp, rounds, model, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def collect(engine):
    out = {}
    for i in range(1, rounds + 1):
        for r in json.load(open(os.path.join(tmp, f"{engine}.{i}.json"))):
            test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
            out.setdefault(test, []).append(r["avg_ts"])
    return out
llama, moe = collect("llama"), collect("moe")
print(f"model: {model}\nthreads: {threads}, rounds: {rounds} (alternating)\n")
print(f"| test   | llama.cpp t/s      | moe.cpp t/s        | moe / llama |")
print(f"| ------ | ------------------ | ------------------ | ----------- |")
for test in sorted(llama, key=lambda t: t[:2] != "pp"):
    a, b = llama[test], moe.get(test, [])
    if not b: continue
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    ma, mb = statistics.mean(a), statistics.mean(b)
    print(f"| {test:6} | {ma:8.2f} ± {sd(a):6.2f} | {mb:8.2f} ± {sd(b):6.2f} | {mb / ma:10.2f}x |")
PY
