// The MLA latent KV cache: per layer and position only the normalized latent
// c_kv (kv_lora_rank values) and the rotated shared key k_rope
// (qk_rope_head_dim values) — 576 floats per token per layer for V3 instead of
// 2 x 128 heads x 128. Keys and values are both recovered from it through
// the absorbed projections (DeepSeek-V2 paper, section 2.1.2).
#pragma once

#include <cstdint>
#include <vector>

#include "core/error.h"

namespace moe {

class MlaKvCache {
 public:
  MlaKvCache(int64_t n_layers, int64_t n_ctx, int64_t kv_lora_rank, int64_t qk_rope_head_dim)
      : n_ctx_(n_ctx), kv_lora_rank_(kv_lora_rank), row_(kv_lora_rank + qk_rope_head_dim),
        data_(static_cast<size_t>(n_layers * n_ctx * row_)) {}

  int64_t n_ctx() const { return n_ctx_; }
  int64_t row_size() const { return row_; }          // kv_lora_rank + qk_rope_head_dim
  int64_t kv_lora_rank() const { return kv_lora_rank_; }
  size_t bytes() const { return data_.size() * sizeof(float); }

  // [c_kv | k_rope] of layer il at position pos.
  float* at(int64_t il, int64_t pos) { return data_.data() + static_cast<size_t>((il * n_ctx_ + pos) * row_); }
  const float* at(int64_t il, int64_t pos) const {
    return data_.data() + static_cast<size_t>((il * n_ctx_ + pos) * row_);
  }

 private:
  int64_t n_ctx_, kv_lora_rank_, row_;
  std::vector<float> data_;
};

}  // namespace moe
