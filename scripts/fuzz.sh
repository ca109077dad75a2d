#!/usr/bin/env bash
# Runs one libFuzzer target for a while from a corpus seeded with fixtures.
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer args...]
#   TARGET: gguf_reader | gguf_set | safetensors | tokenizer | chat_template | batch_line |
#           prompt_cache
#           (with or without the fuzz_ prefix)
# Configures and builds the fuzz build (clang, -DMOE_FUZZ=ON) in build-fuzz/
# (MOE_FUZZ_BUILD overrides), keeps a growing corpus in
# build-fuzz/fuzz/corpus/TARGET, crash inputs in build-fuzz/fuzz/artifacts/TARGET,
# the log in build-fuzz/fuzz/TARGET.log, and prints the executions and
# coverage reached at the end. Exit status: libFuzzer's (non-zero on a finding).
# Run it niced on a shared machine: nice -n 19 scripts/fuzz.sh tokenizer 600
set -euo pipefail

if (($# < 2)); then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
target="fuzz_${1#fuzz_}"
seconds=$2
shift 2

root=$(cd "$(dirname "$0")/.." && pwd)
build=${MOE_FUZZ_BUILD:-$root/build-fuzz}
fixtures=${MOE_FIXTURES_DIR:-$root/../shared/fixtures}
jobs=${JOBS:-2}

case "$target" in
  fuzz_gguf_reader) max_len=65536 ;;
  fuzz_gguf_set) max_len=262144 ;;
  fuzz_safetensors) max_len=65536 ;;
  fuzz_tokenizer) max_len=2048 ;;
  fuzz_chat_template) max_len=8192 ;;
  fuzz_batch_line) max_len=4096 ;;
  fuzz_prompt_cache) max_len=8192 ;;
  *) echo "fuzz.sh: unknown target '$target'" >&2; exit 2 ;;
esac

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (scripts/setup.sh installs it)" >&2; exit 1; }
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMOE_FUZZ=ON -DMOE_CUDA=OFF -DMOE_BUILD_TESTS=OFF -DMOE_FIXTURES_DIR="$fixtures"
fi
ninja -C "$build" -j "$jobs" "$target" fuzz_make_seeds

work=$build/fuzz
seeds=$work/seeds/$target
corpus=$work/corpus/$target
artifacts=$work/artifacts/$target
rm -rf "$seeds"
mkdir -p "$seeds" "$corpus" "$artifacts"

# ---- seed corpus from the fixtures ------------------------------------------
# Copies the first `max_len` bytes of each existing file into the seed dir.
seed_heads() {
  local f
  for f in "$@"; do
    [[ -f "$f" ]] && head -c "$max_len" "$f" >"$seeds/$(basename "$(dirname "$f")")-$(basename "$f")"
  done
  return 0
}
made=$work/made
"$build/tests/fuzz/fuzz_make_seeds" "$made" "$root/tests/fixtures/tiny-dsv3.Q4_K_M.gguf"
case "$target" in
  fuzz_gguf_reader)
    cp "$made"/gguf/*.gguf "$seeds"/
    seed_heads "$root"/tests/fixtures/*.gguf "$fixtures"/tokenizer/*.gguf "$fixtures"/models/tiny-dsv3.Q4_K_M.gguf ;;
  fuzz_gguf_set)
    # A real set (its shards joined by the target's separator), a set of one,
    # and both importance matrix formats.
    sep() { printf '\0SHARD\0'; }
    if compgen -G "$fixtures/split/*-00001-of-*.gguf" >/dev/null; then
      first=$(ls "$fixtures"/split/*-00001-of-*.gguf | head -1)
      { n=0; for f in "${first%-00001-of-*}"-0000?-of-*.gguf; do ((n++)) && sep; cat "$f"; done; } >"$seeds/set"
    fi
    cp "$made"/gguf/seed-tensors.gguf "$seeds"/
    seed_heads "$fixtures"/iq/kjv.imatrix.gguf "$fixtures"/iq/kjv.imatrix.dat ;;
  fuzz_safetensors)
    cp "$made"/safetensors/*.safetensors "$seeds"/
    seed_heads "$fixtures"/hf/*/*.safetensors ;;
  fuzz_tokenizer)
    # Each "text" of the tokenizer reference strings, one file each.
    if [[ -f "$fixtures/tokenizer/tokenizer-deepseek-v3.visible.json" ]]; then
      python3 - "$fixtures/tokenizer/tokenizer-deepseek-v3.visible.json" "$seeds" <<'PY'
import json, sys
for i, case in enumerate(json.load(open(sys.argv[1], encoding="utf-8"))):
    open(f"{sys.argv[2]}/text-{i:03d}", "wb").write(case["text"].encode("utf-8"))
PY
    fi
    printf '<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n' >"$seeds/special" ;;
  fuzz_chat_template)
    # Byte 0 picks the family (0..6) or, from 7 up, "detect from the Jinja
    # source that follows"; then NUL-separated messages, each a role byte
    # (5 system, 1 user, 2 assistant) and the content. Bit 7: generation prompt.
    python3 - "$root/tests/fixtures/chat-templates" "$seeds" <<'PY'
import pathlib, sys
msgs = b"\x05Be brief.\x00\x01Hi\x00\x02<think>hmm</think>Hello!\x00\x01And now?"
out = pathlib.Path(sys.argv[2])
for i in range(7):
    (out / f"family-{i}").write_bytes(bytes([i | 0x80]) + msgs)
for j in sorted(pathlib.Path(sys.argv[1]).glob("*.jinja")):
    (out / j.name).write_bytes(b"\x8f" + j.read_bytes() + b"\x00" + msgs)
PY
    ;;
  fuzz_batch_line)
    printf '%s\n' '{"id": 1, "prompt": "Hello", "n_predict": 8, "temperature": 0.7, "seed": 42, "stop": ["\n", "END"]}' \
      '{"id": "b", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}' \
      '' '{"id": null, "prompt": "x", "stop": "."}' >"$seeds/jsonl"
    printf 'What is 2+2?\r\n\nTell me a joke.\n' >"$seeds/text" ;;
  fuzz_prompt_cache)
    cp "$made"/prompt_cache/* "$seeds"/ ;;
esac
echo "fuzz.sh: $target for ${seconds}s, $(ls "$seeds" | wc -l) seeds, $(ls "$corpus" | wc -l) corpus files, -max_len=$max_len"

# ---- run ---------------------------------------------------------------------
log=$work/$target.log
status=0
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
"$build/tests/fuzz/$target" "$corpus" "$seeds" -max_total_time="$seconds" -max_len="$max_len" \
  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" \
  >"$log" 2>&1 || status=$?

# ---- summary -----------------------------------------------------------------
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done [0-9]+ runs|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^SUMMARY' "$log" || true
if ((status != 0)); then
  echo "fuzz.sh: $target FAILED (status $status); log: $log; inputs: $artifacts/"
  grep -m1 -E '^==[0-9]+==ERROR|runtime error|fuzz_[a-z_]+: ' "$log" || true
else
  echo "fuzz.sh: $target ran ${seconds}s without findings; log: $log"
fi
exit "$status"
