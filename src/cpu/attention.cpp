#include "cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "cpu/attention_block.h"
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
      for (int64_t s = s0; s < s1; ++s) axpy_f32(p[s], a.kv + s * a.kv_stride + a.v_offset, a.dim_v, o);
    }
  }
}

}  // namespace moe

// The portable parts of attention_block.h: a state's layout, its start, and
// the merge of parts into the output rows.
namespace moe {

size_t mla_attend_state_floats(int64_t rows, int64_t dim_v) { return static_cast<size_t>(rows * (2 + dim_v)); }

MlaAttendState mla_attend_state_carve(float* p, int64_t rows) {
  return MlaAttendState{p, p + rows, p + 2 * rows};
}

void mla_attend_state_init(const MlaAttendState& st, int64_t rows, int64_t dim_v) {
  std::fill(st.max, st.max + rows, -INFINITY);
  std::fill(st.sum, st.sum + rows, 0.0f);
  std::fill(st.o, st.o + rows * dim_v, 0.0f);
}

void mla_attend_merge(const MlaAttendBlockArgs& a, const MlaAttendState* parts, int n_parts) {
  const int64_t H = a.n_heads, M = a.n_tok * H, V = a.dim_v;
  for (int64_t m = 0; m < M; ++m) {
    float mx = -INFINITY;
    for (int j = 0; j < n_parts; ++j) mx = std::max(mx, parts[j].max[m]);
    float* o = a.out + (m / H) * a.out_tok_stride + (m % H) * a.out_head_stride;
    std::fill(o, o + V, 0.0f);
    float sum = 0.0f;
    for (int j = 0; j < n_parts; ++j) {
      if (parts[j].max[m] == -INFINITY) continue;
      const float w = std::exp(parts[j].max[m] - mx);
      sum += w * parts[j].sum[m];
      axpy_f32(w, parts[j].o + m * V, V, o);
    }
    const float inv = 1.0f / sum;
    for (int64_t c = 0; c < V; ++c) o[c] *= inv;
  }
}

}  // namespace moe
