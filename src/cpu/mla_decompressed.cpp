#include "cpu/mla_decompressed.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "cpu/latent_rows.h"
#include "cpu/ops.h"
#include "quant/dequantize.h"

namespace moe {

namespace {

// Cached rows rebuilt per product (and decoded from a non-f32 cache).
constexpr int64_t kRebuildRows = 64;
// Tokens per call of the attention kernel: 128 query rows of one head, as
// the absorbed prompts' blocks of 8 tokens x 16 heads (their scores in L1).
constexpr int64_t kTokenBlock = 128;
// A rebuilt head's rows may take this much of a thread's scratch (at
// 320 floats a row, 52k rows of V3); longer contexts stay absorbed.
constexpr int64_t kMaxRebuiltBytes = int64_t{64} << 20;
// What a multiply-add of the rebuild (f32 products of dequantized weights)
// costs against one of the absorbed form's (attention, and the absorb and
// lift products on quantized kernels): set so that prompts from position 0
// under about 170 tokens stay absorbed, where the two measured even (and
// still do after both forms' f32 kernels lost their masked loads: even
// from 128 to 256 tokens, the README's Long contexts).
constexpr double kRebuildCostRatio = 1.5;

int64_t row_floats(const MlaParams& p) { return p.qk_head_dim() + p.v_head_dim; }  // [k_nope | k_rope | v]

struct Layout {
  int64_t w, wrow, rows, dec, q, attend;  // offsets in floats
  int64_t total;
};

Layout layout(const MlaParams& p, int64_t pos0, int64_t n) {
  const int64_t R = p.kv_lora_rank, NOPE = p.qk_nope_head_dim, V = p.v_head_dim, QK = p.qk_head_dim();
  const auto up16 = [](int64_t x) { return (x + 15) / 16 * 16; };  // 64-byte aligned parts
  Layout l;
  l.w = 0;
  l.wrow = l.w + up16(R * (NOPE + V));
  l.rows = l.wrow + up16(std::max(R, NOPE));
  l.dec = l.rows + up16((pos0 + n) * row_floats(p));
  l.q = l.dec + up16(kRebuildRows * p.latent_dim());
  l.attend = l.q + up16(n * QK);
  l.total = l.attend + up16(static_cast<int64_t>(mla_attend_block_scratch_floats(kTokenBlock, 1, QK, V)));
  return l;
}

}  // namespace

bool mla_decompressed_pays(const MlaParams& p, int64_t pos0, int64_t n) {
  const int64_t n_kv = pos0 + n;
  if (n_kv * row_floats(p) * static_cast<int64_t>(sizeof(float)) > kMaxRebuiltBytes) return false;
  const double pairs = static_cast<double>(n) * (static_cast<double>(pos0) + static_cast<double>(n + 1) / 2);
  const double absorbed = pairs * static_cast<double>(p.latent_dim() + p.kv_lora_rank) +
                          static_cast<double>(n) * static_cast<double>(p.kv_lora_rank) *
                              static_cast<double>(p.qk_nope_head_dim + p.v_head_dim);  // absorb + lift
  const double decompressed = pairs * static_cast<double>(row_floats(p)) +
                              kRebuildCostRatio * static_cast<double>(n_kv) * static_cast<double>(p.kv_lora_rank) *
                                  static_cast<double>(p.qk_nope_head_dim + p.v_head_dim);
  return decompressed < absorbed;
}

size_t mla_decompressed_scratch_floats(const MlaParams& p, int64_t pos0, int64_t n) {
  return static_cast<size_t>(layout(p, pos0, n).total);
}

void mla_attention_decompressed(const MlaParams& p, const Act& q, const TensorView& wk_b, const TensorView& wv_b,
                                const LatentCache& cache, int64_t il, int64_t pos0, int64_t n, Act v, ThreadPool& pool,
                                float* scratch, const MlaDecompressedKernels& k) {
  MOE_ASSERT(k.attend && k.gemm, "decompressed MLA needs the AVX-512 kernels");
  const int64_t H = p.n_heads, R = p.kv_lora_rank, NOPE = p.qk_nope_head_dim, P = p.qk_rope_head_dim;
  const int64_t V = p.v_head_dim, QK = p.qk_head_dim(), L = p.latent_dim(), W = row_floats(p);
  const int64_t n_kv = pos0 + n;
  const Layout lay = layout(p, pos0, n);
  const float* freqs = p.rope_freqs.f32();
  const Act layer = cache.layer(il);
  const bool f32_cache = cache.type == LatentType::kF32;

  const auto head = [&](int64_t h, int thread) {
    float* base = scratch + static_cast<size_t>(thread) * static_cast<size_t>(lay.total);
    float* wt = base + lay.w;      // [R][NOPE + V]: row r = [W_UK[h] column r | W_UV[h] column r]
    float* wrow = base + lay.wrow;
    float* rows = base + lay.rows;  // [n_kv][W]: [k_nope | k_rope | v]
    float* dec = base + lay.dec;
    float* qh = base + lay.q;       // [n][QK]: [q_nope | RoPE(q_rope)]

    // W_UK[h] is stored as R rows of NOPE (k_nope = sum_r c[r] * row r);
    // W_UV[h] as V rows of R, taken apart into columns.
    const TensorView wk = wk_b.matrix(h), wv = wv_b.matrix(h);
    for (int64_t r = 0; r < R; ++r) dequantize_row_ref(wk.type, wk.row(r), wt + r * (NOPE + V), NOPE);
    for (int64_t j = 0; j < V; ++j) {
      dequantize_row_ref(wv.type, wv.row(j), wrow, R);
      for (int64_t r = 0; r < R; ++r) wt[r * (NOPE + V) + NOPE + j] = wrow[r];
    }

    // The cached rows, rebuilt: k_nope and v are products of c_kv, k_rope
    // is the cached (rotated) part as it is.
    for (int64_t s0 = 0; s0 < n_kv; s0 += kRebuildRows) {
      const int64_t m = std::min(kRebuildRows, n_kv - s0);
      const float* c = nullptr;
      int64_t ldc = 0;
      if (f32_cache) {
        c = layer.row(s0);
        ldc = layer.stride;
      } else {
        for (int64_t s = 0; s < m; ++s) latent_row_decode(cache.type, layer.row(s0 + s), L, dec + s * L);
        c = dec;
        ldc = L;
      }
      float* out = rows + s0 * W;
      k.gemm({c, ldc, wt, NOPE + V, out, W, m, NOPE, R});
      k.gemm({c, ldc, wt + NOPE, NOPE + V, out + QK, W, m, V, R});
      for (int64_t s = 0; s < m; ++s) std::memcpy(out + s * W + NOPE, c + s * ldc + R, static_cast<size_t>(P) * sizeof(float));
    }

    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(qh + t * QK, q.row(t) + h * QK, static_cast<size_t>(QK) * sizeof(float));
      rope_pairs_apply(qh + t * QK + NOPE, P, freqs, static_cast<float>(pos0 + t), p.rope_mscale);
    }

    for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
      MlaAttendBlockArgs a;
      a.q = qh + t0 * QK;
      a.n_tok = std::min(kTokenBlock, n - t0);
      a.n_heads = 1;
      a.q_tok_stride = QK;
      a.q_head_stride = QK;
      a.kv = rows;
      a.kv_stride = W;
      a.n_kv0 = pos0 + t0 + 1;
      a.dim_qk = QK;
      a.dim_v = V;
      a.v_offset = QK;
      a.scale = p.softmax_scale;
      a.scratch = base + lay.attend;
      a.out = v.row(t0) + h * V;
      a.out_tok_stride = v.stride;
      a.out_head_stride = V;
      k.attend(a);
    }
  };
  pool.parallel_jobs(H, head);
}

}  // namespace moe
