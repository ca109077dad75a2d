#!/usr/bin/env bash
# make-imatrix-reference.sh - record llama.cpp's llama-imatrix on the tiny
# DeepSeek-V4 fixture as the reference for moe-imatrix's V4 test (CI has no
# llama.cpp peer): tests/fixtures/tiny-dsv4.llama-imatrix.gguf, from
#   llama-imatrix -m tiny-dsv4.f32.gguf -f perplexity-text.txt -c 128 -t 2
# run in a folder holding the text, so the file names it without a path.
#
# Environment:
#   LLAMA_IMATRIX    the peer's llama-imatrix (default: the build made by
#                    scripts/build-llamacpp.sh --targets llama-imatrix)
#   MOE_FIXTURES_DIR the shared fixtures (default: ../shared/fixtures)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LLAMA_IMATRIX=${LLAMA_IMATRIX:-$HOME/.cache/moe.cpp/llama.cpp-3.22.1/build-cpu/bin/llama-imatrix}
MODEL=${MOE_FIXTURES_DIR:-$ROOT/../shared/fixtures}/models/tiny-dsv4.f32.gguf
OUT=$ROOT/tests/fixtures/tiny-dsv4.llama-imatrix.gguf
[[ -x $LLAMA_IMATRIX ]] || { echo "llama-imatrix not found at $LLAMA_IMATRIX (scripts/build-llamacpp.sh --targets llama-imatrix)" >&2; exit 1; }
[[ -f $MODEL ]] || { echo "fixture not found: $MODEL" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$ROOT/tests/fixtures/perplexity-text.txt" "$WORK/"
(cd "$WORK" && "$LLAMA_IMATRIX" -m "$MODEL" -f perplexity-text.txt -c 128 -t 2 -o out.gguf >log.txt 2>&1) \
  || { tail -20 "$WORK/log.txt" >&2; exit 1; }
mv "$WORK/out.gguf" "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
echo "wrote $OUT" >&2
