#include "cpu/attention.h"

#include <algorithm>

#include "cpu/ops.h"

namespace moe {

namespace {
// Cache rows per block: 32 rows of V3's 576 floats are 72 KiB, which stay in
// L2 while every head of the group passes over them.
constexpr int64_t kRowBlock = 32;
}  // namespace

void mla_attend_heads(const MlaAttendArgs& a) {
  const int64_t n_kv = a.n_kv;
  for (int64_t s0 = 0; s0 < n_kv; s0 += kRowBlock) {
    const int64_t s1 = std::min(n_kv, s0 + kRowBlock);
    for (int64_t h = 0; h < a.n_heads; ++h) {
      const float* qh = a.q + h * a.q_stride;
      float* sc = a.scores + h * n_kv;
      for (int64_t s = s0; s < s1; ++s) sc[s] = dot_f32(qh, a.kv + s * a.kv_stride, a.dim_qk) * a.scale;
    }
  }
  for (int64_t h = 0; h < a.n_heads; ++h) {
    softmax_inplace(a.scores + h * n_kv, n_kv);
    std::fill(a.out + h * a.out_stride, a.out + h * a.out_stride + a.dim_v, 0.0f);
  }
  for (int64_t s0 = 0; s0 < n_kv; s0 += kRowBlock) {
    const int64_t s1 = std::min(n_kv, s0 + kRowBlock);
    for (int64_t h = 0; h < a.n_heads; ++h) {
      const float* p = a.scores + h * n_kv;
      float* o = a.out + h * a.out_stride;
      for (int64_t s = s0; s < s1; ++s) axpy_f32(p[s], a.kv + s * a.kv_stride, a.dim_v, o);
    }
  }
}

}  // namespace moe
