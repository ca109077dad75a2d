// Prompt attention in the decompressed form (cpu/mla_decompressed.h)
// against the absorbed ops it replaces (mla_query_absorb, mla_attention,
// mla_output_lift) on the same cache, queries and weights: the same
// function in another order.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "cpu/attention_block.h"
#include "cpu/cpu_backend.h"
#include "cpu/gemm_f32.h"
#include "cpu/mla_decompressed.h"
#include "quant/quantize.h"
#include "test_util.h"

using namespace moe;

namespace {

struct Weights {
  std::vector<uint8_t> bytes;
  TensorView view;
};

// [cols, rows, heads] random values of scale `scale`, stored as `type`.
Weights random_weights(GgmlType type, int64_t cols, int64_t rows, int64_t heads, float scale, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  Weights w;
  const size_t row_bytes = ggml_row_size(type, cols);
  w.bytes.resize(row_bytes * static_cast<size_t>(rows * heads));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows * heads; ++r) {
    for (float& x : row) x = normal(rng);
    quantize_row_ref(type, row.data(), w.bytes.data() + static_cast<size_t>(r) * row_bytes, cols);
  }
  w.view = TensorView::contiguous("w", type, {cols, rows, heads, 1}, w.bytes.data());
  return w;
}

// max |absorbed - decompressed| / max |absorbed| over n tokens from pos0.
double relative_difference(GgmlType weight_type, LatentType cache_type, int64_t pos0, int64_t n) {
  CpuBackend be("CPU", 2);
  std::mt19937 rng(static_cast<unsigned>(pos0 * 131 + n));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  MlaParams p;
  p.n_heads = 4;
  p.kv_lora_rank = 64;
  p.qk_rope_head_dim = 16;
  p.qk_nope_head_dim = 32;
  p.v_head_dim = 32;
  p.rms_norm_eps = 1e-6f;
  p.softmax_scale = 1.0f / std::sqrt(static_cast<float>(p.qk_head_dim()));
  std::vector<float> freqs(static_cast<size_t>(p.qk_rope_head_dim / 2));
  for (size_t i = 0; i < freqs.size(); ++i) freqs[i] = std::pow(10000.0f, -2.0f * float(i) / float(p.qk_rope_head_dim));
  p.rope_freqs = TensorView::contiguous("freqs", GgmlType::F32, {int64_t(freqs.size()), 1, 1, 1},
                                        reinterpret_cast<const uint8_t*>(freqs.data()));
  const int64_t H = p.n_heads, R = p.kv_lora_rank, L = p.latent_dim(), n_kv = pos0 + n;
  const Weights wk = random_weights(weight_type, p.qk_nope_head_dim, R, H, 0.2f, rng);
  const Weights wv = random_weights(weight_type, R, p.v_head_dim, H, 0.2f, rng);
  std::vector<float> ones(static_cast<size_t>(R), 1.0f);
  const TensorView kv_norm = TensorView::contiguous("n", GgmlType::F32, {R, 1, 1, 1},
                                                    reinterpret_cast<const uint8_t*>(ones.data()));
  LatentCache cache;
  cache.type = cache_type;
  cache.n_layers = 1;
  cache.n_ctx = n_kv;
  cache.rows = be.alloc(n_kv, LatentCache::storage_cols(cache_type, L));
  const Act kv_a = be.alloc(n_kv, L);
  for (int64_t i = 0; i < n_kv * L; ++i) kv_a.data[i] = normal(rng);
  be.mla_kv_append(p, kv_a, kv_norm, cache, 0, 0, n_kv);

  const Act q = be.alloc(n, H * p.qk_head_dim());
  for (int64_t i = 0; i < n * q.cols; ++i) q.data[i] = normal(rng);
  const Act q_abs = be.alloc(n, H * L), o_lat = be.alloc(n, H * R);
  const Act v_abs = be.alloc(n, H * p.v_head_dim), v_dec = be.alloc(n, H * p.v_head_dim);
  be.mla_query_absorb(p, q, wk.view, pos0, n, q_abs);
  be.mla_attention(p, q_abs, cache, 0, pos0, n, o_lat);
  be.mla_output_lift(p, o_lat, wv.view, n, v_abs);
  be.mla_attention_decompressed(p, q, wk.view, wv.view, cache, 0, pos0, n, v_dec);
  double diff = 0.0, mag = 0.0;
  for (int64_t i = 0; i < n * v_abs.cols; ++i) {
    diff = std::max(diff, std::fabs(double(v_abs.data[i]) - v_dec.data[i]));
    mag = std::max(mag, std::fabs(double(v_abs.data[i])));
  }
  return diff / mag;
}

bool have_kernels() { return mla_attend_block_kernel() && gemm_f32_kernel(); }

}  // namespace

TEST_CASE("decompressed MLA: the absorbed form's outputs, from any position and cache type") {
  if (!have_kernels()) return test::skip("this CPU or build has no AVX-512");
  // f32 weights: both forms multiply f32 values, only the order differs.
  for (const LatentType t : {LatentType::kF32, LatentType::kBf16, LatentType::kQ8_0}) {
    for (const auto& [pos0, n] : {std::pair<int64_t, int64_t>{0, 37}, {0, 200}, {150, 64}, {3, 2}}) {
      const double d = relative_difference(GgmlType::F32, t, pos0, n);
      INFO(std::string(latent_type_name(t)) << " cache, pos0=" << pos0 << " n=" << n << ": relative difference " << d);
      // A bf16 cache's absorbed kernel rounds queries and probabilities to
      // bf16 (AVX512-BF16's products; cpu_attention_block_test's bound);
      // the decompressed form reads the same rows in f32.
      CHECK(d < (t == LatentType::kBf16 ? 1e-2 : 1e-5));
    }
  }
  // Q8_0 weights: the absorbed form's products quantize their activations
  // (q_nope, the latent output) to q8_0 as ggml's do; the decompressed one
  // multiplies the weights' values with f32 rows, so they differ by that
  // rounding (about 2^-8 of a value): bound 2e-2.
  const double q8 = relative_difference(GgmlType::Q8_0, LatentType::kF32, 20, 100);
  MESSAGE("q8_0 weights: relative difference " << q8);
  CHECK(q8 < 2e-2);
  CHECK(q8 > 0.0);
}

TEST_CASE("decompressed MLA pays for long prompts, not for generation or short ones") {
  MlaParams v3;  // DeepSeek-V3's attention
  v3.n_heads = 128, v3.kv_lora_rank = 512, v3.qk_rope_head_dim = 64, v3.qk_nope_head_dim = 128, v3.v_head_dim = 128;
  CHECK(mla_decompressed_pays(v3, 0, 512));
  CHECK(mla_decompressed_pays(v3, 4096, 512));
  CHECK_FALSE(mla_decompressed_pays(v3, 0, 16));
  CHECK_FALSE(mla_decompressed_pays(v3, 4096, 1));
  CHECK_FALSE(mla_decompressed_pays(v3, 4096, 32));
  CHECK_FALSE(mla_decompressed_pays(v3, 200000, 512));  // a head's rebuilt rows would not fit the scratch
  CpuBackend be("CPU", 1);
  CHECK_FALSE(be.mla_decompressed_pays(v3, 4096, 1));
  CHECK(be.mla_decompressed_pays(v3, 0, 512) == have_kernels());
}
