#!/usr/bin/env bash
# shapes-vs-llamacpp.sh - moe.cpp against llama.cpp on model shapes nobody
# shipped a fixture for: tiny random DeepSeek-V2/V3/V3.2/Kimi/GLM and V4
# configurations (the fixtures' shapes with one thing changed at a time),
# written by moe-synth in F32 and quantized, each scored by both engines on
# the same text. The fixtures test a handful of shapes; a held-back shape
# (another head count, window, ratio list, expert count, ...) is where a
# hard-coded dimension would show.
#
# Usage: scripts/shapes-vs-llamacpp.sh [-f v3|v4|all] [-t THREADS] [-k DIR]
#   -f  which families (default all)
#   -t  threads for both engines (default 2)
#   -k  keep the files in DIR (default: a temporary folder, removed)
#
# Method: llama.cpp's llama-perplexity (the npm bundle's build, made by
# scripts/build-llamacpp.sh; f32 KV cache, flash attention off) scores
# tests/fixtures/kjv-ruth.txt in chunks of 256 and saves its log-probabilities
# (--kl-divergence-base); moe-perplexity --kl-divergence scores the same
# chunks against them. F32 rows must agree (mean KL <= 1e-4, same top token
# >= 99%: the two differ only in float order; the script fails otherwise).
# Quantized rows are reported, V4's against issue 26's bound (mean KL <=
# 0.01, top >= 95%): rounding differences move a random model's nearly tied
# choices, and for V2/V3 prompts llama.cpp rounds MLA's per-head products'
# activations to 8 bits where moe.cpp's decompressed form multiplies in f32
# (README, "Agreement on shapes without fixtures"). A shape llama.cpp cannot
# load or crashes on is reported as such, and moe.cpp must still score it.
set -euo pipefail
cd "$(dirname "$0")/.."
family=all; threads=2; keep=""
while getopts "f:t:k:h" opt; do
  case $opt in
    f) family=$OPTARG ;; t) threads=$OPTARG ;; k) keep=$OPTARG ;;
    *) sed -n '2,24p' "$0"; exit 2 ;;
  esac
done
peer_bin=$(scripts/build-llamacpp.sh --targets "llama-perplexity" | tail -1)
make build >/dev/null
if [[ -n $keep ]]; then mkdir -p "$keep"; work=$keep; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
text=tests/fixtures/kjv-ruth.txt
vocab=models/tiny-kjv-dsv3.Q4_K_M.gguf  # a 4096-token tokenizer keeps the log-prob files small

# name|family|types|config: a base config and one change each.
python3 - "$work" "$family" <<'PY' > "$work/shapes.txt"
import json, sys, copy
work, family = sys.argv[1], sys.argv[2]
v4 = {"architectures": ["DeepseekV4ForCausalLM"], "hidden_size": 256, "num_hidden_layers": 4,
      "num_attention_heads": 4, "head_dim": 64, "qk_rope_head_dim": 32, "q_lora_rank": 128, "o_groups": 2,
      "o_lora_rank": 32, "sliding_window": 32, "compress_ratios": [0, 4, 128, 4], "compress_rope_theta": 160000.0,
      "index_n_heads": 4, "index_head_dim": 64, "index_topk": 8, "hc_mult": 4, "hc_sinkhorn_iters": 3,
      "hc_eps": 1e-6, "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
      "n_shared_experts": 1, "num_hash_layers": 1, "routed_scaling_factor": 1.5, "norm_topk_prob": True,
      "swiglu_limit": 10.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 4096}
v4_shapes = {
    "v4-base": {}, "v4-heads8": {"num_attention_heads": 8, "head_dim": 128, "qk_rope_head_dim": 64, "o_groups": 4,
                                 "o_lora_rank": 16},
    "v4-experts8": {"n_routed_experts": 8, "num_experts_per_tok": 3, "moe_intermediate_size": 96,
                    "n_shared_experts": 2, "num_hash_layers": 2},
    "v4-nohash": {"num_hash_layers": 0, "norm_topk_prob": False, "routed_scaling_factor": 2.5},
    "v4-hidden384": {"hidden_size": 384, "q_lora_rank": 96, "num_hidden_layers": 3, "compress_ratios": [128, 4, 0]},
    "v4-topk64": {"index_topk": 64}, "v4-window8": {"sliding_window": 8}, "v4-window256": {"sliding_window": 256},
    "v4-yarn": {"rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 64}},
    "v4-ogroups1": {"o_groups": 1, "o_lora_rank": 64},
    "v4-layers6": {"num_hidden_layers": 6, "compress_ratios": [0, 0, 4, 128, 4, 128], "num_hash_layers": 3},
    "v4-csa-first": {"compress_ratios": [4, 4, 128, 0]}, "v4-index-heads2": {"index_n_heads": 2},
    "v4-rope16": {"qk_rope_head_dim": 16}, "v4-sinkhorn20": {"hc_sinkhorn_iters": 20},
    # llama.cpp (3.22.1) cannot run these: hc != 4, no HCA or no CSA layer, no shared expert.
    "v4-hc2": {"hc_mult": 2}, "v4-csa-only": {"compress_ratios": [4, 0, 4, 4]},
    "v4-hca-only": {"compress_ratios": [0, 128, 0, 128]}, "v4-no-shared": {"n_shared_experts": 0},
}
v3 = {"architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 512,
      "moe_intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
      "n_shared_experts": 1, "n_routed_experts": 16, "num_experts_per_tok": 4, "routed_scaling_factor": 2.5,
      "kv_lora_rank": 64, "q_lora_rank": 96, "qk_rope_head_dim": 16, "qk_nope_head_dim": 32, "v_head_dim": 32,
      "topk_method": "noaux_tc", "n_group": 4, "topk_group": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1,
      "norm_topk_prob": True, "scoring_func": "sigmoid", "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
      "rope_theta": 10000, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 64,
                                            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}}
v3_shapes = {
    "v3-base": {}, "v3-one-group": {"n_group": 1, "topk_group": 1}, "v3-no-dense": {"first_k_dense_replace": 0},
    "v3-shared2": {"n_shared_experts": 2, "num_experts_per_tok": 6},
    "v3-heads": {"n_group": 8, "topk_group": 3, "v_head_dim": 48, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32},
    "v3-no-yarn": {"rope_scaling": None},
    "kimi-k2": {"n_group": 1, "topk_group": 1, "routed_scaling_factor": 2.827, "rope_theta": 50000.0},
    "glm-4.7-flash": {"n_group": 1, "topk_group": 1, "qk_nope_head_dim": 48, "v_head_dim": 64,
                      "rope_scaling": None, "rms_norm_eps": 1e-5, "rope_theta": 1e6},
    "v2-softmax": {"topk_method": "greedy", "scoring_func": "softmax", "n_group": 1, "topk_group": 1,
                   "norm_topk_prob": False},
    "v3.2": {"architectures": ["DeepseekV32ForCausalLM"], "index_n_heads": 4, "index_head_dim": 64,
             "index_topk": 16},
}
def emit(shapes, base, fam, types):
    for name, change in shapes.items():
        c = copy.deepcopy(base)
        for k, v in change.items():
            if v is None: c.pop(k, None)
            else: c[k] = v
        json.dump(c, open(f"{work}/{name}.json", "w"))
        print(f"{name}|{fam}|{types}")
if family in ("v3", "all"): emit(v3_shapes, v3, "v3", "F32 Q8_0 Q4_K_M")
if family in ("v4", "all"): emit(v4_shapes, v4, "v4", "F32 Q8_0 MXFP4_MOE")
PY

stat() { sed -n "s/^$1 *: *\([^ ]*\).*/\1/p" "$2" | head -1; }
failed=0
printf '%-16s %-10s %12s %8s %s\n' shape type "mean KL" "top %" "verdict"
while IFS='|' read -r name fam types; do
  f32=$work/$name.F32.gguf
  build/moe-synth --config "$work/$name.json" --vocab "$vocab" --type F32 --seed 7 -o "$f32" >"$work/$name.synth.log" 2>&1 \
    || { echo "$name: moe-synth failed: $(tail -1 "$work/$name.synth.log")"; failed=1; continue; }
  for type in $types; do
    file=$work/$name.$type.gguf
    [[ $type == F32 ]] || build/moe-quantize "$f32" "$file" "$type" >"$work/$name.$type.q.log" 2>&1 \
      || { echo "$name $type: moe-quantize failed"; failed=1; continue; }
    base=$work/$name.$type.kld
    # (through sh, whose stderr takes the shell's "Aborted" when llama.cpp dies of a signal)
    if ! sh -c '"$@" >"$0" 2>&1' "$work/$name.$type.llama.log" "$peer_bin/llama-perplexity" -m "$file" -f "$text" \
        -c 256 -b 256 -t "$threads" -ctk f32 -ctv f32 -fa off --kl-divergence-base "$base" 2>/dev/null || [[ ! -s $base ]]; then
      # llama.cpp cannot run it: ours must, with a finite perplexity.
      if build/moe-perplexity -m "$file" -f "$text" -c 256 -t "$threads" >"$work/$name.$type.ours.log" 2>&1 \
          && grep -q 'Final estimate: PPL = [0-9]' "$work/$name.$type.ours.log"; then
        printf '%-16s %-10s %12s %8s %s\n' "$name" "$type" - - "llama.cpp cannot run it; moe.cpp runs it"
      else
        printf '%-16s %-10s %12s %8s %s\n' "$name" "$type" - - "FAIL: neither runs it"; failed=1
      fi
      break  # the other types of a shape llama.cpp refuses tell nothing more
    fi
    log=$work/$name.$type.ours.log
    build/moe-perplexity -m "$file" --kl-divergence-base "$base" --kl-divergence -t "$threads" >"$log" 2>&1 \
      || { echo "$name $type: moe-perplexity failed: $(tail -1 "$log")"; failed=1; continue; }
    kl=$(stat "Mean    KLD" "$log"); top=$(stat "Same top p" "$log")
    verdict=$(python3 -c "
kl, top, t, fam = float('$kl'), float('$top'), '$type', '$fam'
if t == 'F32': print('agrees' if kl <= 1e-4 and top >= 99 else 'FAIL')
elif fam == 'v4': print(('within' if kl <= 0.01 and top >= 95 else 'outside') + \" issue 26's bound\")
else: print('reported (see README: two roundings of the MLA prompt products)')")
    [[ $verdict == FAIL ]] && failed=1
    printf '%-16s %-10s %12s %8s %s\n' "$name" "$type" "$kl" "$top" "$verdict"
  done
done < "$work/shapes.txt"
exit $failed
