#include "cpu/dsv4_ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cpu/ops.h"

namespace moe {

namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

void dsv4_hc_weights(const float* mixes, const float* scale, const float* base, int64_t hc, float eps, int64_t iters,
                     float* pre, float* post, float* comb) {
  for (int64_t h = 0; h < hc; ++h) {
    pre[h] = sigmoid(mixes[h] * scale[0] + base[h]) + eps;
    post[h] = 2.0f * sigmoid(mixes[hc + h] * scale[1] + base[hc + h]);
  }
  for (int64_t k = 0; k < hc * hc; ++k) comb[k] = mixes[2 * hc + k] * scale[2] + base[2 * hc + k];
  for (int64_t src = 0; src < hc; ++src) softmax_inplace(comb + hc * src, hc);  // over dst
  for (int64_t k = 0; k < hc * hc; ++k) comb[k] += eps;
  auto norm_cols = [&] {  // each dst: divide by its sum over src
    for (int64_t dst = 0; dst < hc; ++dst) {
      float s = 0.0f;
      for (int64_t src = 0; src < hc; ++src) s += comb[dst + hc * src];
      s += eps;
      for (int64_t src = 0; src < hc; ++src) comb[dst + hc * src] /= s;
    }
  };
  auto norm_rows = [&] {  // each src: divide by its sum over dst
    for (int64_t src = 0; src < hc; ++src) {
      float s = 0.0f;
      for (int64_t dst = 0; dst < hc; ++dst) s += comb[dst + hc * src];
      s += eps;
      for (int64_t dst = 0; dst < hc; ++dst) comb[dst + hc * src] /= s;
    }
  };
  norm_cols();
  for (int64_t i = 1; i < iters; ++i) {
    norm_rows();
    norm_cols();
  }
}

void dsv4_hc_head_weights(const float* mixes, const float* scale, const float* base, int64_t hc, float eps, float* pre) {
  for (int64_t h = 0; h < hc; ++h) pre[h] = sigmoid(mixes[h] * scale[0] + base[h]) + eps;
}

void dsv4_hc_collapse(const float* x, const float* pre, int64_t hc, int64_t D, float* y) {
  for (int64_t i = 0; i < D; ++i) y[i] = x[i] * pre[0];
  for (int64_t h = 1; h < hc; ++h)
    for (int64_t i = 0; i < D; ++i) y[i] += x[h * D + i] * pre[h];
}

void dsv4_hc_expand(const float* out, const float* post, const float* comb, int64_t hc, int64_t D, float* x,
                    float* old) {
  std::copy(x, x + hc * D, old);  // every new stream reads every old one
  for (int64_t dst = 0; dst < hc; ++dst) {
    float* y = x + dst * D;
    for (int64_t i = 0; i < D; ++i) y[i] = out[i] * post[dst];
    for (int64_t src = 0; src < hc; ++src) {
      const float c = comb[dst + hc * src];
      const float* r = old + src * D;
      for (int64_t i = 0; i < D; ++i) y[i] += r[i] * c;
    }
  }
}

void dsv4_rope_tail(float* v, int64_t dim, int64_t rope_dim, int64_t pos, float base, const RopeScalingParams& sc,
                    bool inverse) {
  // ggml_rope_cache_init: theta starts at pos and is multiplied by theta_scale per pair;
  // rope_yarn mixes the interpolated and the original angle per pair.
  const float theta_scale = std::pow(base, -2.0f / static_cast<float>(rope_dim));
  float theta_extrap = static_cast<float>(pos);
  float* x = v + (dim - rope_dim);
  for (int64_t i = 0; i < rope_dim; i += 2) {
    const float theta_interp = sc.freq_scale * theta_extrap;
    float theta = theta_interp;
    if (sc.ext_factor != 0.0f) {
      const float y = (static_cast<float>(i / 2) - sc.corr_low) / std::max(0.001f, sc.corr_high - sc.corr_low);
      const float ramp_mix = (1.0f - std::min(1.0f, std::max(0.0f, y))) * sc.ext_factor;
      theta = theta_interp * (1.0f - ramp_mix) + theta_extrap * ramp_mix;
    }
    theta_extrap *= theta_scale;
    const float c = std::cos(theta) * sc.mscale, s = (inverse ? -std::sin(theta) : std::sin(theta)) * sc.mscale;
    const float x0 = x[i], x1 = x[i + 1];
    x[i] = x0 * c - x1 * s;
    x[i + 1] = x0 * s + x1 * c;
  }
}

void dsv4_compress_block(const float* prev_kv, const float* prev_score, const float* cur_kv, const float* cur_score,
                         int64_t ratio, int64_t dim, bool overlap, float* out) {
  const int64_t width = overlap ? 2 * dim : dim;  // a token's projection row
  const int64_t cur_off = overlap ? dim : 0;
  for (int64_t c = 0; c < dim; ++c) {
    float mx = -INFINITY;
    if (overlap && prev_score)
      for (int64_t j = 0; j < ratio; ++j) mx = std::max(mx, prev_score[j * width + c]);
    for (int64_t j = 0; j < ratio; ++j) mx = std::max(mx, cur_score[j * width + cur_off + c]);
    double sum = 0.0;
    float acc = 0.0f;
    if (overlap && prev_score) {
      for (int64_t j = 0; j < ratio; ++j) {
        const float e = std::exp(prev_score[j * width + c] - mx);
        sum += e;
        acc += e * prev_kv[j * width + c];
      }
    }
    for (int64_t j = 0; j < ratio; ++j) {
      const float e = std::exp(cur_score[j * width + cur_off + c] - mx);
      sum += e;
      acc += e * cur_kv[j * width + cur_off + c];
    }
    out[c] = acc * static_cast<float>(1.0 / sum);
  }
}

void dsv4_attention_sinks_ref(const float* q, int64_t n_heads, int64_t dim, const float* const* keys, int64_t n,
                              const float* sinks, float scale, float* scores, float* out) {
  for (int64_t h = 0; h < n_heads; ++h) {
    const float* qh = q + h * dim;
    float mx = sinks[h];
    for (int64_t j = 0; j < n; ++j) {
      scores[j] = dot_f32(qh, keys[j], dim) * scale;
      mx = std::max(mx, scores[j]);
    }
    double sum = std::exp(static_cast<double>(sinks[h] - mx));
    for (int64_t j = 0; j < n; ++j) {
      scores[j] = std::exp(scores[j] - mx);
      sum += scores[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    float* oh = out + h * dim;
    std::fill(oh, oh + dim, 0.0f);
    for (int64_t j = 0; j < n; ++j) axpy_f32(scores[j] * inv, keys[j], dim, oh);
  }
}

void dsv4_attention_sinks(const float* q, int64_t n_heads, int64_t dim, const float* const* keys, int64_t n,
                          const float* sinks, float scale, float* scores, float* out) {
  constexpr int64_t kBlock = 8;  // rows of 2 KB (V4's 512 values): a block stays in L1 across the heads
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int64_t j1 = std::min(n, j0 + kBlock);
    for (int64_t h = 0; h < n_heads; ++h)
      for (int64_t j = j0; j < j1; ++j) scores[h * n + j] = dot_f32(q + h * dim, keys[j], dim) * scale;
  }
  std::vector<float> inv_buf;  // not per token in practice: n_heads <= 128 fits the stack below
  float inv_stack[128];
  float* inv = n_heads <= 128 ? inv_stack : (inv_buf.resize(static_cast<size_t>(n_heads)), inv_buf.data());
  for (int64_t h = 0; h < n_heads; ++h) {
    float* sc = scores + h * n;
    float mx = sinks[h];
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, sc[j]);
    double sum = std::exp(static_cast<double>(sinks[h] - mx));
    for (int64_t j = 0; j < n; ++j) {
      sc[j] = std::exp(sc[j] - mx);
      sum += sc[j];
    }
    inv[h] = static_cast<float>(1.0 / sum);
    std::fill(out + h * dim, out + (h + 1) * dim, 0.0f);
  }
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int64_t j1 = std::min(n, j0 + kBlock);
    for (int64_t h = 0; h < n_heads; ++h)
      for (int64_t j = j0; j < j1; ++j) axpy_f32(scores[h * n + j] * inv[h], keys[j], dim, out + h * dim);
  }
}

}  // namespace moe
