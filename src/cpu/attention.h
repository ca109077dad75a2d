// Attention of a group of query heads over MLA's latent cache. In the
// absorbed form every head attends to the same cached rows [c_kv | k_rope]
// (DeepSeek-V2 §2.1.2: keys and values are both read from the latent), so
// the heads of one token are processed together, block of cache rows by
// block, and each row is loaded once for all of them.
#pragma once

#include <cstdint>

namespace moe {

// For h < n_heads:
//   p[h][s]  = softmax_s(scale * q[h] . kv[s][0 .. dim_qk))   s < n_kv
//   out[h]   = sum_s p[h][s] * kv[s][v_offset .. v_offset + dim_v)
struct MlaAttendArgs {
  const float* q;       // [n_heads] rows, q_stride floats apart
  int64_t n_heads;
  int64_t q_stride;
  const float* kv;      // [n_kv] cache rows, kv_stride floats apart
  int64_t kv_stride;
  int64_t n_kv;
  int64_t dim_qk;       // elements of a row scored against q
  int64_t dim_v;        // elements of a row summed into out (the latent c_kv)
  int64_t v_offset = 0; // where they start in the row: 0 in the absorbed form (c_kv is both)
  float scale;
  float* scores;        // scratch, n_heads * n_kv floats
  float* out;           // [n_heads] rows, out_stride floats apart
  int64_t out_stride;
};

void mla_attend_heads(const MlaAttendArgs& a);

}  // namespace moe
