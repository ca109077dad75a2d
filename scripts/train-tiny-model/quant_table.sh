#!/bin/bash
# Perplexity and KL divergence to F32 of the trained model at each
# quantization type, made by our own tools (moe-quantize, moe-perplexity),
# printed as the Markdown table README.md shows.
#
#   scripts/train-tiny-model/quant_table.sh F32_GGUF HELDOUT_TXT [BUILD_DIR]
#
# Every type's file goes to $OUT_DIR (default: the F32 file's directory);
# the F32 file's log-probabilities are saved once (llama.cpp's base-file
# format) and each quantized file is compared with them.
set -euo pipefail
F32=${1:?F32 GGUF}; TEXT=${2:?held-out text}; BUILD=${3:-build}
OUT_DIR=${OUT_DIR:-$(dirname "$F32")}
CTX=${CTX:-256}; THREADS=${THREADS:-2}
TYPES=${TYPES:-"Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K"}
base="$OUT_DIR/f32.kld"

ppl_of() { sed -n 's/^Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' "$1"; }
mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { print b / 1048576 }'; }
field() { grep -m1 "^$2" "$1" | sed 's/.*: *//'; }

"$BUILD/moe-perplexity" -m "$F32" -f "$TEXT" -c "$CTX" -t "$THREADS" --kl-divergence-base "$base" > "$OUT_DIR/ppl.F32.txt" 2>&1
echo "| type | file MiB | held-out PPL | mean KL to F32 | same top-1 as F32 |"
echo "|---|---|---|---|---|"
printf "| F32 | %.1f | %s | — | — |\n" "$(mib "$F32")" "$(ppl_of "$OUT_DIR/ppl.F32.txt")"
for t in $TYPES; do
  q="$OUT_DIR/model.$t.gguf"
  "$BUILD/moe-quantize" "$F32" "$q" "$t" > /dev/null 2>&1
  "$BUILD/moe-perplexity" -m "$q" -f "$TEXT" -c "$CTX" -t "$THREADS" > "$OUT_DIR/ppl.$t.txt" 2>&1
  "$BUILD/moe-perplexity" -m "$q" -c "$CTX" -t "$THREADS" --kl-divergence --kl-divergence-base "$base" > "$OUT_DIR/kld.$t.txt" 2>&1
  printf "| %s | %.1f | %s | %s | %s |\n" "$t" "$(mib "$q")" "$(ppl_of "$OUT_DIR/ppl.$t.txt")" \
    "$(field "$OUT_DIR/kld.$t.txt" "Mean    KLD")" "$(field "$OUT_DIR/kld.$t.txt" "Same top p")"
done
