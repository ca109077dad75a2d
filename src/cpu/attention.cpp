#include "cpu/attention.h"

#include <algorithm>

#include "cpu/ops.h"

namespace moe {

namespace {
// Cache rows per block: 32 rows of V3's 576 floats are 72 KiB, which stay in
// L2 while every head of the group passes over them.
constexpr int64_t kRowBlock = 32;
}  // namespace

void mla_attend_heads(const float* q, int64_t n_heads, int64_t q_stride, const float* kv, int64_t kv_stride,
                      int64_t n_kv, int64_t dim_qk, int64_t dim_v, float scale, float* scores, float* out,
                      int64_t out_stride) {
  for (int64_t s0 = 0; s0 < n_kv; s0 += kRowBlock) {
    const int64_t s1 = std::min(n_kv, s0 + kRowBlock);
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* qh = q + h * q_stride;
      float* sc = scores + h * n_kv;
      for (int64_t s = s0; s < s1; ++s) sc[s] = dot_f32(qh, kv + s * kv_stride, dim_qk) * scale;
    }
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    softmax_inplace(scores + h * n_kv, n_kv);
    std::fill(out + h * out_stride, out + h * out_stride + dim_v, 0.0f);
  }
  for (int64_t s0 = 0; s0 < n_kv; s0 += kRowBlock) {
    const int64_t s1 = std::min(n_kv, s0 + kRowBlock);
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* p = scores + h * n_kv;
      float* o = out + h * out_stride;
      for (int64_t s = s0; s < s1; ++s) axpy_f32(p[s], kv + s * kv_stride, dim_v, o);
    }
  }
}

}  // namespace moe
