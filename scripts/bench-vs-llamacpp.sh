#!/usr/bin/env bash
# bench-vs-llamacpp.sh - moe.cpp against llama.cpp (and optionally another
# llama-bench-compatible engine, e.g. ik_llama.cpp) on the same file, same
# threads, same run: prompt (ppN) and generation (tgN) tokens/s and ratios.
#
# Usage: scripts/bench-vs-llamacpp.sh [options]
#   -m FILE       model (default: a V2-Lite-shaped Q4_K_M made by moe-synth,
#                 cached in $MOE_PEER_CACHE/synth/)
#   -t N          threads for every engine (default: nproc)
#   -p N          prompt tokens (default 512)
#   -n N          generated tokens (default 128)
#   -d N          tokens already in the cache when each test starts (llama-bench -d; default 0)
#   -r N          rounds (default 3); each round runs every engine once, one
#                 repetition each, the order rotating between rounds, so drift
#                 in the machine hits all alike
#   -P DIR        another peer: the directory of its llama-bench (any build
#                 that takes llama-bench's flags and -o json); repeatable
#   -N NAME       the last -P peer's name in the table (default: the
#                 directory's parent)
#   -A "ARGS"     extra llama-bench arguments for the last -P peer only
#                 (e.g. -P ik/bin -P ik/bin -A "-rtr 1": its defaults and run-time repacking)
#
# The first peer is llama.cpp from the node-llama-cpp npm bundle, built (once,
# cached) by scripts/build-llamacpp.sh. moe.cpp is built with `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=$(nproc); n_prompt=512; n_gen=128; depth=0; rounds=3; model=""
peers=(); peer_names=(); peer_args=()
while getopts "m:t:p:n:d:r:P:N:A:h" opt; do
  case $opt in
    m) model=$OPTARG ;; t) threads=$OPTARG ;; p) n_prompt=$OPTARG ;; n) n_gen=$OPTARG ;; d) depth=$OPTARG ;;
    r) rounds=$OPTARG ;;
    P) [[ -x $OPTARG/llama-bench ]] || { echo "bench: no llama-bench in '$OPTARG'" >&2; exit 1; }
       peers+=("$OPTARG"); peer_names+=("$(basename "$(dirname "$(cd "$OPTARG" && pwd)")")"); peer_args+=("") ;;
    N|A) ((${#peers[@]})) || { echo "bench: -$opt comes after the -P it applies to" >&2; exit 2; }
       last=$((${#peers[@]} - 1))
       if [[ $opt == N ]]; then peer_names[last]=$OPTARG; else peer_args[last]=$OPTARG; fi ;;
    *) sed -n '2,23p' "$0"; exit 2 ;;
  esac
done
source scripts/bench-setup.sh  # $peer_bin, moe.cpp built, $model made and cached
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
common=(-m "$model" -t "$threads" -p "$n_prompt" -n "$n_gen" -r 1)
((depth > 0)) && common+=(-d "$depth")
run_engine() {  # engine round: its stderr kept, and a failure named
  local log=$tmp/$1.$2.log status=0
  case $1 in
    llama) "$peer_bin/llama-bench" "${common[@]}" -o json 2>"$log" >"$tmp/llama.$2.json" || status=$? ;;
    moe) build/moe-bench "${common[@]}" --json 2>"$log" >"$tmp/moe.$2.json" || status=$? ;;
    peer*) local k=${1#peer}  # shellcheck disable=SC2086
      "${peers[k]}/llama-bench" "${common[@]}" ${peer_args[k]} -o json 2>"$log" >"$tmp/$1.$2.json" || status=$? ;;
  esac
  if ((status != 0)); then
    local name=$1
    [[ $1 == peer* ]] && name="${peer_names[${1#peer}]} (${peers[${1#peer}]})"
    echo "bench: $name failed (exit $status); its last words:" >&2
    tail -n 5 "$log" >&2
    exit 1
  fi
}
engines=(llama)
for k in "${!peers[@]}"; do engines+=("peer$k"); done
engines+=(moe)
for ((i = 1; i <= rounds; i++)); do
  echo "bench: round $i/$rounds" >&2
  n=${#engines[@]}
  for ((k = 0; k < n; k++)); do run_engine "${engines[$(((k + i - 1) % n))]}" "$i"; done
done
labels=()
for k in "${!peers[@]}"; do labels+=("${peer_names[k]}${peer_args[k]:+ ${peer_args[k]}}"); done
python3 - "$tmp" "$rounds" "$model" "$threads" "$depth" "${labels[@]}" <<'PY'
import json, statistics, sys, os
tmp, rounds, model, threads, depth, labels = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6], sys.argv[6:]
def collect(engine):
    out = {}
    for i in range(1, rounds + 1):
        path = os.path.join(tmp, f"{engine}.{i}.json")
        if not os.path.exists(path): return {}
        for r in json.load(open(path)):
            test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
            out.setdefault(test, []).append(r["avg_ts"])
    return out
cols = [("llama.cpp", collect("llama"))] + [(name, collect(f"peer{k}")) for k, name in enumerate(labels)]
moe = collect("moe")
print(f"model: {model}\nthreads: {threads}, depth: {depth}, rounds: {rounds} (engines rotating)\n")
sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
head = "| test   | " + " | ".join(f"{n} t/s" for n, _ in cols) + " | moe.cpp t/s | " + " | ".join(f"moe / {n}" for n, _ in cols) + " |"
print(head)
print("|" + "|".join("---" for _ in range(2 + 2 * len(cols))) + "|")
for test in sorted(moe, key=lambda t: t[:2] != "pp"):
    m = moe[test]
    cells = [f"{statistics.mean(c[test]):.2f} ± {sd(c[test]):.2f}" if test in c else "-" for _, c in cols]
    ratios = [f"{statistics.mean(m) / statistics.mean(c[test]):.2f}x" if test in c else "-" for _, c in cols]
    print(f"| {test:6} | " + " | ".join(cells) + f" | {statistics.mean(m):.2f} ± {sd(m):.2f} | " + " | ".join(ratios) + " |")
# Every round's figure, in round order (the machine's drift shows here).
print()
for test in sorted(moe, key=lambda t: t[:2] != "pp"):
    for n, c in cols + [("moe.cpp", moe)]:
        if test in c: print(f"{test} {n}: " + " ".join(f"{v:.2f}" for v in c[test]))
# moe.cpp reads the model into memory (and repacks its experts) only when
# twice the file fits in the available memory: say when a round mapped it.
mapped = [i for i in range(1, rounds + 1)
          if any(r.get("use_mmap", False) for r in json.load(open(os.path.join(tmp, f"moe.{i}.json"))))]
if mapped:
    print(f"\nnote: moe.cpp ran from the file mapping in round(s) {mapped} (not enough available memory to read "
          "the model; --no-mmap forces it)")
PY
