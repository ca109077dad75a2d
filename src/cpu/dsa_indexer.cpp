#include "cpu/dsa_indexer.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "cpu/latent_rows.h"
#include "quant/dot_f32.h"

namespace moe {

void hadamard_inplace(float* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<float>(n)));  // ggml_gen_hadamard's entry
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
}

void dsa_rotate(const DsaParams& p, float* x, float pos) {
  const float* freqs = p.rope_freqs.f32();
  const int64_t half = p.rope_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float theta = pos * freqs[i];
    const float c = std::cos(theta) * p.rope_mscale, s = std::sin(theta) * p.rope_mscale;
    const float x0 = x[i], x1 = x[i + half];
    x[i] = x0 * c - x1 * s;
    x[i + half] = x0 * s + x1 * c;
  }
  hadamard_inplace(x, p.head_dim);
}

void dsa_key(const DsaParams& p, const float* k_raw, const float* norm, const float* norm_b, float pos, float* out) {
  const int64_t D = p.head_dim;
  float sum = 0.0f;
  for (int64_t i = 0; i < D; ++i) sum += k_raw[i];
  const float mean = sum / static_cast<float>(D);
  float sum2 = 0.0f;
  for (int64_t i = 0; i < D; ++i) {
    out[i] = k_raw[i] - mean;
    sum2 += out[i] * out[i];
  }
  const float scale = 1.0f / std::sqrt(sum2 / static_cast<float>(D) + p.norm_eps);
  for (int64_t i = 0; i < D; ++i) out[i] = out[i] * scale * norm[i] + norm_b[i];
  dsa_rotate(p, out, pos);
}

void dsa_key_shift(const DsaParams& p, float* x, int64_t old_pos, int64_t new_pos) {
  const float* freqs = p.rope_freqs.f32();
  const int64_t half = p.rope_dim / 2;
  hadamard_inplace(x, p.head_dim);
  for (int64_t i = 0; i < half; ++i) {
    const double a_old = static_cast<float>(old_pos) * freqs[i], a_new = static_cast<float>(new_pos) * freqs[i];
    const double c = std::cos(a_new - a_old), s = std::sin(a_new - a_old);
    const double x0 = x[i], x1 = x[i + half];
    x[i] = static_cast<float>(x0 * c - x1 * s);
    x[i + half] = static_cast<float>(x0 * s + x1 * c);
  }
  hadamard_inplace(x, p.head_dim);
}

void dsa_scores(const DsaParams& p, const float* q, const float* w, const float* keys, int64_t key_stride, int64_t n_kv,
                float* scores) {
  const int64_t H = p.n_heads, D = p.head_dim;
  const float wscale = 1.0f / std::sqrt(static_cast<float>(D * H));
  std::vector<float> decoded(p.key_type == LatentType::kF32 ? 0 : static_cast<size_t>(D));
  for (int64_t s = 0; s < n_kv; ++s) {
    const float* k = keys + s * key_stride;
    if (!decoded.empty()) latent_row_decode(p.key_type, k, D, decoded.data()), k = decoded.data();
    float score = 0.0f;
    for (int64_t h = 0; h < H; ++h) {
      score += std::max(dot_f32(q + h * D, k, D), 0.0f) * (w[h] * wscale);
    }
    scores[s] = score;
  }
}

void dsa_key_store(const DsaParams& p, const float* key, float* stored) {
  if (p.key_type == LatentType::kF32) std::copy(key, key + p.head_dim, stored);
  else latent_row_encode(p.key_type, key, p.head_dim, stored);
}

int64_t dsa_top_k(const float* scores, int64_t n, int64_t k, int32_t* out, int32_t* order) {
  if (n <= k) {
    std::iota(out, out + n, 0);
    return n;
  }
  std::iota(order, order + n, 0);
  std::partial_sort(order, order + k, order + n, [&](int32_t a, int32_t b) { return scores[a] > scores[b]; });
  std::copy(order, order + k, out);
  return k;
}

}  // namespace moe
