// DeepSeekMoE routing: which experts a token goes to, and with what weight.
//
//   s      = softmax(logits) or sigmoid(logits)           (scoring_func)
//   choice = s + bias                                     (aux-loss-free balancing, V3; selection only)
//   groups : keep the topk_group best of n_group groups, scored by the sum of
//            their top-2 choice scores when there is a bias (V3), else by
//            their best score (V2) — DeepSeek's inference/model.py Gate
//   ids    = top-k of choice among the kept groups
//   w      = s[ids], normalized to sum 1 if norm_topk_prob, times routed_scaling_factor
#pragma once

#include <cstdint>

#include "model/deepseek2_config.h"

namespace moe {

struct MoeRouteParams {
  int64_t n_experts = 0;
  int64_t top_k = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  ScoringFunc scoring = ScoringFunc::kSoftmax;
  const float* bias = nullptr;  // [n_experts] or null
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
};

// logits: [n_experts]; writes ids[top_k] (best first) and weights[top_k].
// scratch: at least 2 * n_experts floats.
void moe_route_topk(const MoeRouteParams& p, const float* logits, int32_t* ids, float* weights, float* scratch);

}  // namespace moe
