#include "cpu/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/gemm_q8.h"
#include "cpu/matmul_interleaved.h"
#include "quant/interleaved.h"
#include "cpu/qdot.h"
#include "quant/vec_dot.h"

namespace moe {

CpuIsa cpu_isa_active() {
  // Detected once; MOE_CPU_ISA=scalar|avx2 forces a lesser one (benchmarks,
  // and checking that every path gives the same numbers).
  static const CpuIsa isa = [] {
    const CpuIsa best = cpu_isa_detected();
    const char* env = std::getenv("MOE_CPU_ISA");
    if (env == nullptr || *env == '\0') return best;
    if (std::strcmp(env, "scalar") == 0) return CpuIsa::kScalar;
    if (std::strcmp(env, "avx2") == 0 && best != CpuIsa::kScalar) return CpuIsa::kAvx2;
    return best;
  }();
  return isa;
}

namespace {
// Many tokens against a type the repacked GEMM takes: that path (gemm_q8.h).
bool use_gemm(const TensorView& W, int64_t n_tokens, bool allow_gemm = true) {
  const int64_t min_tokens = is_interleaved(W.type) ? kGemmMinTokensInterleaved : kGemmMinTokens;
  return allow_gemm && n_tokens >= min_tokens && gemm_available(W.type) && W.ne[0] % 32 == 0;
}
}  // namespace

size_t matmul_scratch_bytes(const TensorView& W, int64_t n_tokens, bool allow_gemm) {
  const size_t act = ggml_row_size(vec_dot_type(W.type), W.ne[0]) * static_cast<size_t>(n_tokens);
  if (!use_gemm(W, n_tokens, allow_gemm)) return act;
  return std::max(act, gemm_act_row_bytes(W.ne[0]) * static_cast<size_t>(n_tokens) + 64);
}

size_t activation_row_bytes(const TensorView& W) { return ggml_row_size(vec_dot_type(W.type), W.ne[0]); }

void quantize_activations(const TensorView& W, const float* x, int64_t n_tokens, uint8_t* act) {
  const GgmlType act_type = vec_dot_type(W.type);
  const int64_t n_in = W.ne[0];
  const size_t act_row = ggml_row_size(act_type, n_in);
  for (int64_t t = 0; t < n_tokens; ++t) quantize_activation_row(act_type, x + t * n_in, act + t * act_row, n_in);
}

namespace {
// The per-row kernels, activation rows act_row bytes apart.
void matmul_rows_strided(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, size_t act_row,
                         int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t n_in = W.ne[0];
  if (is_interleaved(W.type)) return interleaved_rows(W, r0, r1, act, act_row, n_tokens, y, y_stride);
  if (const QdotFn kernel = qdot_kernel(W.type, cpu_isa_active())) {
    const size_t w_row = ggml_row_size(W.type, n_in);
    kernel(QdotArgs{W.data + static_cast<size_t>(r0) * w_row, w_row, r1 - r0, act, act_row, n_tokens, n_in, y + r0,
                    y_stride});
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* w = W.row(r);
    for (int64_t t = 0; t < n_tokens; ++t) y[t * y_stride + r] = vec_dot_row(W.type, w, act + t * act_row, n_in);
  }
}
}  // namespace

void matmul_rows(const TensorView& W, int64_t r0, int64_t r1, const uint8_t* act, int64_t n_tokens, float* y,
                 int64_t y_stride) {
  matmul_rows_strided(W, r0, r1, act, activation_row_bytes(W), n_tokens, y, y_stride);
}

ActLayout activation_layout(const TensorView& W, int64_t n_tokens, bool allow_gemm) {
  if (use_gemm(W, n_tokens, allow_gemm)) return {true, gemm_act_row_bytes(W.ne[0])};
  return {false, activation_row_bytes(W)};
}

size_t activation_row_bytes_max(const TensorView& W) {
  const size_t row = activation_row_bytes(W);
  // kGemmMinTokens is the larger threshold: true whenever the GEMM is ever taken.
  return use_gemm(W, kGemmMinTokens) ? std::max(row, gemm_act_row_bytes(W.ne[0])) : row;
}

void quantize_activations(const TensorView& W, ActLayout layout, const float* x, uint8_t* act) {
  if (layout.gemm) gemm_quantize_row(W.type, x, W.ne[0], act);
  else quantize_activation_row(vec_dot_type(W.type), x, act, W.ne[0]);
}

void matmul_rows(const TensorView& W, ActLayout layout, int64_t r0, int64_t r1, const uint8_t* act, size_t act_stride,
                 int64_t n_tokens, float* y, int64_t y_stride, GemmTile& tile) {
  if (layout.gemm) gemm_rows(W, r0, r1, act, act_stride, n_tokens, y, y_stride, tile);
  else matmul_rows_strided(W, r0, r1, act, act_stride, n_tokens, y, y_stride);
}

namespace {

// The repacked GEMM: activations quantized for it (in parallel), then the
// rows in tiles of kGemmRows, each repacked once for every token.
void matmul_gemm(const TensorView& W, const float* x, int64_t n_tokens, float* y, void* scratch, ThreadPool* pool) {
  const int64_t n_in = W.ne[0], n_out = W.ne[1];
  const size_t stride = gemm_act_row_bytes(n_in);
  uint8_t* act = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(scratch) + 63) / 64 * 64);
  auto quantize = [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) gemm_quantize_row(W.type, x + t * n_in, n_in, act + static_cast<size_t>(t) * stride);
  };
  const int64_t tiles = (n_out + kGemmRows - 1) / kGemmRows;
  auto rows = [&](int64_t i0, int64_t i1, int) {
    GemmTile tile;
    gemm_rows(W, i0 * kGemmRows, std::min(n_out, i1 * kGemmRows), act, stride, n_tokens, y, n_out, tile);
  };
  if (pool == nullptr) {
    quantize(0, n_tokens, 0);
    rows(0, tiles, 0);
  } else {
    pool->parallel_for(n_tokens, quantize);
    pool->parallel_for(tiles, rows);
  }
}

// pool == nullptr: everything on the calling thread.
void matmul_impl(const TensorView& W, const float* x, int64_t n_tokens, float* y, void* scratch, ThreadPool* pool,
                 bool allow_gemm) {
  MOE_DASSERT(W.ne[2] == 1 && W.ne[3] == 1);
  if (use_gemm(W, n_tokens, allow_gemm)) return matmul_gemm(W, x, n_tokens, y, scratch, pool);
  const int64_t n_in = W.ne[0], n_out = W.ne[1];
  uint8_t* act = static_cast<uint8_t*>(scratch);
  quantize_activations(W, x, n_tokens, act);
  // Parallel over weight rows: each weight row is read once for all tokens.
  auto rows = [&](int64_t r0, int64_t r1, int) { matmul_rows(W, r0, r1, act, n_tokens, y, n_out); };
  // Waking the workers costs more than a small product (tiny models, one
  // token) unless the weights are big enough that reading them from memory
  // is the cost (the f32 router of a large model: 512 KiB per layer).
  constexpr int64_t kMinParallelMacs = int64_t{1} << 18;
  constexpr size_t kMinParallelBytes = size_t{1} << 17;
  if (pool == nullptr || (n_out * n_in * n_tokens < kMinParallelMacs && W.nbytes() < kMinParallelBytes))
    rows(0, n_out, 0);
  else pool->parallel_for(n_out, rows);
}

}  // namespace

void matmul(const TensorView& W, const float* x, int64_t n_tokens, float* y, void* scratch, ThreadPool& pool,
            bool allow_gemm) {
  matmul_impl(W, x, n_tokens, y, scratch, &pool, allow_gemm);
}

void matmul_serial(const TensorView& W, const float* x, int64_t n_tokens, float* y, void* scratch, bool allow_gemm) {
  matmul_impl(W, x, n_tokens, y, scratch, nullptr, allow_gemm);
}

}  // namespace moe
