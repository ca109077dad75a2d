// DeepSeekMoE routing of one token on the CPU: which experts it goes to and
// with what weight (the equations are at MoeRouteParams in
// runtime/backend.h). Plain scalar code; it is also the reference the device
// routers are tested against.
#pragma once

#include <cstdint>

#include "runtime/backend.h"

namespace moe {

// logits: [n_experts]; writes ids[top_k] (best first) and weights[top_k].
// scratch: at least 2 * n_experts floats.
void moe_route_topk(const MoeRouteParams& p, const float* logits, int32_t* ids, float* weights, float* scratch);

// The gate's scores s of n router logits (softmax, sigmoid, sqrt-softplus).
void moe_gate_scores(ScoringFunc f, const float* logits, int64_t n, float* s);
// weights[k] = s[ids[k]], normalised to sum 1 when p.norm_topk_prob, times
// p.routed_scaling_factor.
void moe_route_weights(const MoeRouteParams& p, const float* s, const int32_t* ids, float* weights);

}  // namespace moe
