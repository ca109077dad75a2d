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

}  // namespace moe
