#include "cpu/moe_route.h"

#include <cmath>

#include "cpu/ops.h"

namespace moe {

void moe_gate_scores(ScoringFunc f, const float* logits, int64_t n, float* s) {
  for (int64_t e = 0; e < n; ++e) s[e] = logits[e];
  switch (f) {
    case ScoringFunc::kSoftmax: softmax_inplace(s, n); break;
    case ScoringFunc::kSigmoid:
      for (int64_t e = 0; e < n; ++e) s[e] = 1.0f / (1.0f + std::exp(-s[e]));
      break;
    case ScoringFunc::kSqrtSoftplus:  // ggml's softplus: x past 20 as is
      for (int64_t e = 0; e < n; ++e) s[e] = std::sqrt(s[e] > 20.0f ? s[e] : std::log(1.0f + std::exp(s[e])));
      break;
  }
}

void moe_route_weights(const MoeRouteParams& p, const float* s, const int32_t* ids, float* weights) {
  float sum = 0.0f;
  for (int64_t k = 0; k < p.top_k; ++k) sum += weights[k] = s[ids[k]];
  if (p.norm_topk_prob) {
    // llama.cpp clamps the sum to the smallest normal f16 to avoid dividing by zero.
    const float denom = sum < 6.103515625e-5f ? 6.103515625e-5f : sum;
    for (int64_t k = 0; k < p.top_k; ++k) weights[k] /= denom;
  }
  for (int64_t k = 0; k < p.top_k; ++k) weights[k] *= p.routed_scaling_factor;
}

void moe_route_topk(const MoeRouteParams& p, const float* logits, int32_t* ids, float* weights, float* scratch) {
  const int64_t E = p.n_experts;
  float* s = scratch;           // scores used for the weights
  float* choice = scratch + E;  // scores used for selection
  const float* bias = p.bias.empty() ? nullptr : p.bias.f32();
  moe_gate_scores(p.scoring, logits, E, s);
  for (int64_t e = 0; e < E; ++e) choice[e] = s[e] + (bias ? bias[e] : 0.0f);

  if (p.n_group > 1 && p.topk_group < p.n_group) {
    const int64_t per = E / p.n_group;
    float group_score[256];
    bool keep[256] = {};
    for (int64_t g = 0; g < p.n_group; ++g) {
      const float* c = choice + g * per;
      float best = -INFINITY, second = -INFINITY;
      for (int64_t i = 0; i < per; ++i) {
        if (c[i] > best) second = best, best = c[i];
        else if (c[i] > second) second = c[i];
      }
      group_score[g] = bias ? best + (per > 1 ? second : 0.0f) : best;
    }
    for (int64_t k = 0; k < p.topk_group; ++k) {
      int64_t arg = -1;
      for (int64_t g = 0; g < p.n_group; ++g)
        if (!keep[g] && (arg < 0 || group_score[g] > group_score[arg])) arg = g;
      keep[arg] = true;
    }
    for (int64_t g = 0; g < p.n_group; ++g)
      if (!keep[g])
        for (int64_t i = 0; i < per; ++i) choice[g * per + i] = -INFINITY;
  }

  for (int64_t k = 0; k < p.top_k; ++k) {
    int64_t arg = -1;
    for (int64_t e = 0; e < E; ++e)
      if (choice[e] != -INFINITY && (arg < 0 || choice[e] > choice[arg])) arg = e;
    ids[k] = static_cast<int32_t>(arg);
    choice[arg] = -INFINITY;
  }
  moe_route_weights(p, s, ids, weights);
}

}  // namespace moe
