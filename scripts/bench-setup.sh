# bench-setup.sh - sourced by the bench-*-vs-llamacpp.sh scripts (from the
# repository root, with $model set or empty): builds the llama.cpp peer
# (cached) into $peer_bin and moe.cpp, makes the default model (a
# V2-Lite-shaped Q4_K_M from moe-synth, cached) when no -m was given, and
# brings the model's pages into the page cache the same way for every engine.
cache=${MOE_PEER_CACHE:-$HOME/.cache/moe.cpp}
peer_bin=$(scripts/build-llamacpp.sh --targets "llama-bench llama-batched-bench" | tail -1)
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
