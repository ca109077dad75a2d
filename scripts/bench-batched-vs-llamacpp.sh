#!/usr/bin/env bash
# bench-batched-vs-llamacpp.sh - many sequences at once: moe.cpp's batched
# mode (moe-bench -npl, what `moe --batch -np B` runs) against llama.cpp's
# llama-batched-bench on the same file, same threads, same run: aggregate
# prompt (S_PP) and generation (S_TG) tokens/s for each B, and the ratios.
#
# Usage: scripts/bench-batched-vs-llamacpp.sh [options]
#   -m FILE       model (default: the V2-Lite-shaped Q4_K_M of bench-vs-llamacpp.sh)
#   -t N          threads for both engines (default: nproc)
#   -b LIST       sequences at once, comma-separated (default 1,4,8,16)
#   -p N          prompt tokens per sequence (default 128)
#   -n N          generated tokens per sequence (default 128)
#   -r N          rounds (default 3); each round runs both engines once,
#                 the order alternating between rounds
#
# llama-batched-bench gets -c B_max * (p + n) (its cache is shared by all
# sequences) and evaluates all prompts of a row in one batch; moe.cpp
# evaluates each sequence's prompt in its own chunks (so that an answer does
# not depend on its neighbours) and decodes all sequences together.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=$(nproc); list=1,4,8,16; n_prompt=128; n_gen=128; rounds=3; model=""
while getopts "m:t:b:p:n:r:h" opt; do
  case $opt in
    m) model=$OPTARG ;; t) threads=$OPTARG ;; b) list=$OPTARG ;; p) n_prompt=$OPTARG ;; n) n_gen=$OPTARG ;;
    r) rounds=$OPTARG ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
  esac
done
source scripts/bench-setup.sh  # $peer_bin, moe.cpp built, $model made and cached
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
b_max=$(tr ',' '\n' <<<"$list" | sort -n | tail -1)
run_engine() {
  local log=$tmp/$1.$2.log status=0
  case $1 in
    llama) "$peer_bin/llama-batched-bench" -m "$model" -t "$threads" -c $((b_max * (n_prompt + n_gen) + 64)) \
             -b 2048 -ub 512 -npp "$n_prompt" -ntg "$n_gen" -npl "$list" --output-format jsonl \
             2>"$log" >"$tmp/llama.$2.jsonl" || status=$? ;;
    moe) build/moe-bench -m "$model" -t "$threads" -npp "$n_prompt" -ntg "$n_gen" -npl "$list" -r 1 -o jsonl \
           2>"$log" >"$tmp/moe.$2.jsonl" || status=$? ;;
  esac
  if ((status != 0)); then
    echo "bench: $1 failed (exit $status); its last words:" >&2
    tail -n 5 "$log" >&2
    exit 1
  fi
}
for ((i = 1; i <= rounds; i++)); do
  echo "bench: round $i/$rounds" >&2
  if ((i % 2)); then run_engine llama "$i"; run_engine moe "$i"; else run_engine moe "$i"; run_engine llama "$i"; fi
done
python3 - "$tmp" "$rounds" "$model" "$threads" "$n_prompt" "$n_gen" <<'PY'
import json, statistics, sys, os
tmp, rounds, model, threads, npp, ntg = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def collect(engine, b_key):
    out = {}
    for i in range(1, rounds + 1):
        for line in open(os.path.join(tmp, f"{engine}.{i}.jsonl")):
            line = line.strip()
            if not line.startswith("{"): continue
            r = json.loads(line)
            if b_key not in r: continue
            out.setdefault(r[b_key], {"pp": [], "tg": []})
            out[r[b_key]]["pp"].append(r["speed_pp"])
            out[r[b_key]]["tg"].append(r["speed_tg"])
    return out
llama, moe = collect("llama", "pl"), collect("moe", "n_seq")
med = statistics.median
print(f"model: {model}\nthreads: {threads}, prompt {npp} and generation {ntg} tokens per sequence, "
      f"rounds: {rounds} (engines alternating), medians\n")
print("| B | llama.cpp S_PP t/s | moe.cpp S_PP t/s | ratio | llama.cpp S_TG t/s | moe.cpp S_TG t/s | ratio |")
print("|---|---|---|---|---|---|---|")
for b in sorted(moe):
    l, m = llama.get(b), moe[b]
    if not l: continue
    print(f"| {b} | {med(l['pp']):.1f} | {med(m['pp']):.1f} | {med(m['pp']) / med(l['pp']):.2f}x "
          f"| {med(l['tg']):.1f} | {med(m['tg']):.1f} | {med(m['tg']) / med(l['tg']):.2f}x |")
PY
