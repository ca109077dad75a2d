// Element-wise and row-wise CPU ops of the forward pass, f32, scalar and
// written to follow ggml's CPU arithmetic (double sums where ggml uses them)
// so results track llama.cpp's.
#pragma once

#include <cstdint>

#include "quant/dot_f32.h"  // dot_f32, axpy_f32

namespace moe {

// y = x / sqrt(mean(x^2) + eps) * w   (RMSNorm; w may be null for no scale)
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y);

// In-place softmax of n values.
void softmax_inplace(float* x, int64_t n);

// y[i] = silu(g[i]) * u[i]
void swiglu(const float* g, const float* u, int64_t n, float* y);

// DeepSeek-V4's clamped SwiGLU, in place: g[i] = silu(min(g[i], L)) * clamp(u[i], -L, L)
// (ggml's swiglu_clamp).
void swiglu_clamped(float* g, const float* u, int64_t n, float limit);


// Rotary position embedding on adjacent pairs (x[2i], x[2i+1]) — ggml's
// "normal" rope, DeepSeek's view_as_complex — with per-pair angles
// theta_i = pos * freq[i] and cos/sin scaled by mscale.
void rope_pairs_apply(float* x, int64_t n_dims, const float* freqs, float pos, float mscale);

}  // namespace moe
