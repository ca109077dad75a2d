// The blocked MLA attention for prompts (cpu/attention_block.h) against its
// scalar reference, mla_attend_heads run per token, bit for bit: causal rows, blocks of
// keys cut anywhere, row tiles with fewer than 8 rows, widths that are not
// multiples of 16.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/attention.h"
#include "cpu/attention_block.h"
#include "test_util.h"

using namespace moe;

TEST_CASE("attention blocks: equal the per-token reference") {
  const MlaAttendBlockFn block = mla_attend_block_kernel();
  if (!block) return test::skip("this CPU or build has no AVX-512");
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Shape {
    int64_t n_tok, n_heads, n_kv0, dim_qk, dim_v;
  };
  const Shape shapes[] = {{8, 16, 1, 576, 512}, {5, 3, 33, 40, 33}, {1, 1, 70, 17, 16},
                          {8, 16, 100, 72, 64}, {3, 7, 31, 64, 48}, {8, 2, 2, 24, 16}};
  for (const Shape& sh : shapes) {
    INFO("n_tok=" << sh.n_tok << " heads=" << sh.n_heads << " n_kv0=" << sh.n_kv0 << " qk=" << sh.dim_qk << " v=" << sh.dim_v);
    const int64_t n_kv = sh.n_kv0 + sh.n_tok - 1, kv_stride = sh.dim_qk + 3;
    const int64_t q_head = sh.dim_qk + 1, q_tok = q_head * sh.n_heads + 5;
    const int64_t o_head = sh.dim_v + 2, o_tok = o_head * sh.n_heads + 1;
    std::vector<float> kv(static_cast<size_t>(n_kv * kv_stride)), q(static_cast<size_t>(sh.n_tok * q_tok));
    for (float& v : kv) v = normal(rng);
    for (float& v : q) v = normal(rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(sh.dim_qk));

    std::vector<float> want(static_cast<size_t>(sh.n_tok * o_tok), 0.0f), got(want);
    std::vector<float> scores(static_cast<size_t>(sh.n_heads * n_kv));
    for (int64_t t = 0; t < sh.n_tok; ++t) {
      MlaAttendArgs a;
      a.q = q.data() + t * q_tok, a.n_heads = sh.n_heads, a.q_stride = q_head;
      a.kv = kv.data(), a.kv_stride = kv_stride, a.n_kv = sh.n_kv0 + t;
      a.dim_qk = sh.dim_qk, a.dim_v = sh.dim_v, a.scale = scale, a.scores = scores.data();
      a.out = want.data() + t * o_tok, a.out_stride = o_head;
      mla_attend_heads(a);
    }
    std::vector<float> scratch(mla_attend_block_scratch_floats(sh.n_tok, sh.n_heads, sh.n_kv0, sh.dim_qk), NAN);
    MlaAttendBlockArgs b;
    b.q = q.data(), b.n_tok = sh.n_tok, b.n_heads = sh.n_heads, b.q_tok_stride = q_tok, b.q_head_stride = q_head;
    b.kv = kv.data(), b.kv_stride = kv_stride, b.n_kv0 = sh.n_kv0, b.dim_qk = sh.dim_qk, b.dim_v = sh.dim_v;
    b.scale = scale, b.scratch = scratch.data();
    b.out = got.data(), b.out_tok_stride = o_tok, b.out_head_stride = o_head;
    block(b);
    // The same sums in the same order (dot_f32's partial sums, softmax_inplace,
    // axpy_f32's products then sums): equal to the bit.
    size_t differ = 0;
    for (size_t i = 0; i < want.size(); ++i) differ += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
    CHECK(differ == 0);
    // Padding between rows untouched (the kernel writes only dim_v per row).
    CHECK(got[static_cast<size_t>(sh.dim_v)] == 0.0f);
  }
}
