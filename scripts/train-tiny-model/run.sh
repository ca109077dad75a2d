#!/bin/bash
# Train the tiny DeepSeek-V3 on the King James Bible and ship it as models/$MODEL_NAME,
# from a fresh Debian machine: packages, build, data, tokenizer check, training
# (resumable: rerun to continue from out/ckpt.pt), evaluation, conversion,
# quantization, cross-checks against the C++ engine. CI never runs this.
#
#   scripts/train-tiny-model/run.sh            everything (skips steps whose output exists)
#   SKIP_SETUP=1 scripts/train-tiny-model/run.sh   no apt-get
# Environment: BUILD (build directory, default build-train), STEPS (default: train.py's),
# TRAIN_ARGS (more train.py options, e.g. "--gamma 1e-2").
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="${BUILD:-$ROOT/build-train}"
OUT="$HERE/out"
PY=/usr/bin/python3            # Debian's python3-torch, not a pyenv/venv interpreter
MODEL_NAME="${MODEL_NAME:-tiny-kjv-dsv3.Q4_K_M.gguf}"
QTYPE="${QTYPE:-Q4_K_M}"
NICE="nice -n 19"              # the machine is shared
mkdir -p "$OUT/data"

if [ -z "${SKIP_SETUP:-}" ]; then
  "$ROOT/scripts/setup.sh"
  "$HERE/setup.sh"
fi

echo "== build the tools ($BUILD)"
[ -f "$BUILD/build.ninja" ] || cmake -S "$ROOT" -B "$BUILD" -G Ninja -DMOE_CUDA=OFF -DCMAKE_BUILD_TYPE=Release
TARGETS="moe-convert moe-quantize moe moe-tokenize moe-logits"
if ninja -C "$BUILD" -t targets all 2>/dev/null | grep -q '^moe-perplexity:'; then TARGETS="$TARGETS moe-perplexity"; fi
ninja -C "$BUILD" -j2 $TARGETS

echo "== data: King James Bible, whole books held out"
[ -f "$OUT/data/heldout.txt" ] || $PY "$HERE/prepare_data.py" --train "$OUT/data/train.txt" --heldout "$OUT/data/heldout.txt"

# The tokenizer (tokenizer/) is committed; it was made from DeepSeek-V3's tokenizer.json by
#   cut_tokenizer.py --full .../tokenizer.json --full-config .../tokenizer_config.json --merges 3836 --out tokenizer

echo "== untrained model -> GGUF: carries the vocabulary, and checks the logits conventions"
if [ ! -f "$OUT/init.f32.gguf" ]; then
  $PY "$HERE/train.py" --export-init "$OUT/init-hf" --init-std 0.2
  "$BUILD/moe-convert" "$OUT/init-hf" -o "$OUT/init.f32.gguf" --outtype f32
fi
$PY "$HERE/compare_logits.py" --hf "$OUT/init-hf" --gguf "$OUT/init.f32.gguf" --moe-logits "$BUILD/moe-logits"

echo "== tokenize with moe-tokenize"
[ -f "$OUT/data/train.ids.npy" ] || $PY "$HERE/tokenize_corpus.py" --moe-tokenize "$BUILD/moe-tokenize" \
  --gguf "$OUT/init.f32.gguf" --tokenizer-json "$HERE/tokenizer/tokenizer.json" \
  "$OUT/data/heldout.txt=$OUT/data/heldout.ids.npy" "$OUT/data/train.txt=$OUT/data/train.ids.npy"

echo "== train (resumes from $OUT/ckpt.pt)"
$NICE $PY "$HERE/train.py" --out "$OUT" ${STEPS:+--steps "$STEPS"} ${TRAIN_ARGS:-} 2>&1 | tee -a "$OUT/train.log"

$PY "$HERE/train.py" --out "$OUT" --replot
echo "== evaluate the exported weights on the held-out books"
$NICE $PY "$HERE/train.py" --eval "$OUT/hf" --data "$OUT/data" | tee "$OUT/eval.txt"
$NICE $PY "$HERE/train.py" --eval "$OUT/hf" --data "$OUT/data" --zero-bias | tee "$OUT/eval-zero-bias.txt"

echo "== convert, check logits, quantize"
# The MTP module stays in (blk.4.nextn.*, deepseek2.nextn_predict_layers = 1):
# llama.cpp loads such files and skips the module unless asked for MTP drafting.
"$BUILD/moe-convert" "$OUT/hf" -o "$OUT/model.f32.gguf" --outtype f32 --name tiny-kjv-dsv3
$PY "$HERE/compare_logits.py" --hf "$OUT/hf" --gguf "$OUT/model.f32.gguf" --moe-logits "$BUILD/moe-logits"
"$BUILD/moe-quantize" "$OUT/model.f32.gguf" "$ROOT/models/$MODEL_NAME" "$QTYPE"

echo "== perplexity of the F32 GGUF in the C++ engine (must equal train.py --eval within 0.5%)"
if [ -x "$BUILD/moe-perplexity" ]; then
  $NICE "$BUILD/moe-perplexity" -m "$OUT/model.f32.gguf" -f "$OUT/data/heldout.txt" -c 256 -t 2 | tee "$OUT/moe-perplexity.txt"
fi
LLAMA_PPL="$HOME/.cache/moe.cpp/llama.cpp-3.22.1/build-cpu/bin/llama-perplexity"
if [ -x "$LLAMA_PPL" ]; then
  $NICE "$LLAMA_PPL" -m "$OUT/model.f32.gguf" -f "$OUT/data/heldout.txt" -c 256 -b 256 -ctk f32 -ctv f32 -fa off -t 2 \
    > "$OUT/llama-perplexity.txt" 2>&1
  grep "Final estimate" "$OUT/llama-perplexity.txt"
fi

echo "== perplexity and KL to F32 for each quantization type (README's table)"
OUT_DIR="$OUT" "$HERE/quant_table.sh" "$OUT/model.f32.gguf" "$OUT/data/heldout.txt" "$BUILD" | tee "$OUT/quant-table.md"

echo "== generate (the default sampler, fixed seed)"
"$BUILD/moe" -m "$ROOT/models/$MODEL_NAME" -p "And God said" -n 60 -s 1
