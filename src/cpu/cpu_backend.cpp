#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/fp16.h"
#include "cpu/attention.h"
#include "cpu/latent_rows.h"
#include "cpu/attention_block.h"
#include "cpu/dsa_indexer.h"
#include "cpu/matmul.h"
#include "cpu/mla_decompressed.h"
#include "cpu/moe_route.h"
#include "cpu/ops.h"
#include "cpu/qdot.h"
#include "quant/dequantize.h"

namespace moe {

namespace {

inline size_t sz(int64_t v) { return static_cast<size_t>(v); }

// Heads attending together: they share each loaded cache row (cpu/attention.h).
constexpr int64_t kAttnHeadGroup = 8;
// From this many tokens on, attention runs in blocks of tokens and heads
// (cpu/attention_block.h): 8 tokens x 16 heads = 128 query rows per block.
constexpr int64_t kAttnBlockMinTokens = 4;
constexpr int64_t kAttnBlockTokens = 8, kAttnBlockHeads = 16;
// Fewer tokens (generation) split the cached rows into parts of about this
// many rows, computed by the threads and merged (cpu/attention_block.h).
constexpr int64_t kAttnSplitKeys = 256, kAttnMaxParts = 32;

// Below about this many multiply-adds a step runs on the calling thread:
// waking the others costs more (tiny models, one token).
constexpr int64_t kMinParallelMacs = int64_t{1} << 18;

void require_dense(const Act& a, const char* what) {
  MOE_DASSERT(a.stride == a.cols);
  (void)a, (void)what;
}

}  // namespace

CpuBackend::CpuBackend(std::string name, int n_threads) : name_(std::move(name)), pool_(n_threads) {
  if (const char* env = std::getenv("MOE_MLA_PROMPT"); env && *env) {
    if (std::strcmp(env, "absorbed") == 0) mla_prompt_form_ = MlaPromptForm::kAbsorbed;
    else if (std::strcmp(env, "decompressed") == 0) mla_prompt_form_ = MlaPromptForm::kDecompressed;
    else if (std::strcmp(env, "auto") != 0)
      throw_error("MOE_MLA_PROMPT='%s': expected auto, absorbed or decompressed", env);
  }
}

CpuBackend::~CpuBackend() {
  for (void* p : blocks_) std::free(p);
}

std::string CpuBackend::describe() const {
  return strfmt("%s (%s, %d threads)", name_.c_str(), cpu_isa_name(cpu_isa_active()), pool_.size());
}

void* CpuBackend::alloc_bytes(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw_error("%s: cannot allocate %zu bytes", name_.c_str(), bytes);
  std::memset(p, 0, rounded);
  blocks_.push_back(p);
  return p;
}

Act CpuBackend::alloc(int64_t rows, int64_t cols) {
  Act a;
  a.data = static_cast<float*>(alloc_bytes(sz(rows * cols) * sizeof(float)));
  a.rows = rows, a.cols = cols, a.stride = cols;
  return a;
}

Ids CpuBackend::alloc_ids(int64_t rows, int64_t cols) {
  Ids a;
  a.data = static_cast<int32_t*>(alloc_bytes(sz(rows * cols) * sizeof(int32_t)));
  a.rows = rows, a.cols = cols, a.stride = cols;
  return a;
}

uint8_t* CpuBackend::alloc_weight_bytes(size_t bytes) {
  weight_bytes_ += bytes;
  return static_cast<uint8_t*>(alloc_bytes(bytes));
}

void CpuBackend::copy_from_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

void CpuBackend::copy_rows(const Act& src, Act dst, int64_t n) {
  MOE_ASSERT(src.cols == dst.cols && n <= src.rows && n <= dst.rows, "copy_rows: %lld rows of %lld into %lld of %lld",
             static_cast<long long>(n), static_cast<long long>(src.cols), static_cast<long long>(dst.rows),
             static_cast<long long>(dst.cols));
  for (int64_t r = 0; r < n; ++r) std::memcpy(dst.row(r), src.row(r), sz(src.cols) * sizeof(float));
}

void CpuBackend::gather_rows_to_host(const Act& src, const int32_t* rows, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * src.cols, src.row(rows[i]), sz(src.cols) * sizeof(float));
}

void CpuBackend::scatter_rows_from_host(const float* src, const int32_t* rows, int64_t n, Act dst) {
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst.row(rows[i]), src + i * dst.cols, sz(dst.cols) * sizeof(float));
}

// x = embedding rows (ggml get_rows dequantizes the stored rows)
void CpuBackend::embed(const TensorView& table, const int32_t* tokens, int64_t n, Act x) {
  for (int64_t t = 0; t < n; ++t) dequantize_row_ref(table.type, table.row(tokens[t]), x.row(t), x.cols);
}

void CpuBackend::rms_norm(const Act& x, const TensorView& w, float eps, int64_t n, Act y) {
  const float* wv = w.f32();
  for (int64_t t = 0; t < n; ++t) moe::rms_norm(x.row(t), wv, x.cols, eps, y.row(t));
}

void CpuBackend::matmul(const TensorView& W, const Act& x, int64_t n, Act y) {
  require_dense(x, "matmul input");
  require_dense(y, "matmul output");
  MOE_DASSERT(x.cols == W.ne[0] && y.cols == W.ne[1]);
  moe::matmul(W, x.data, n, y.data, scratch(mm_scratch_, matmul_scratch_bytes(W, n, !batch_invariant_)), pool_,
              !batch_invariant_);
}

void CpuBackend::add(Act x, const Act& y, int64_t n) {
  require_dense(x, "add"), require_dense(y, "add");
  for (int64_t i = 0; i < n * x.cols; ++i) x.data[i] += y.data[i];
}

void CpuBackend::swiglu(Act g, const Act& u, int64_t n) {
  require_dense(g, "swiglu"), require_dense(u, "swiglu");
  moe::swiglu(g.data, u.data, n * g.cols, g.data);
}

void CpuBackend::output_head(const TensorView& W, const Act& x, int64_t n, float* logits) {
  require_dense(x, "output head");
  moe::matmul(W, x.data, n, logits, scratch(mm_scratch_, matmul_scratch_bytes(W, n, !batch_invariant_)), pool_,
              !batch_invariant_);
}

// Every type: the f32 and bf16 kernels read their rows, the decoding
// kernels f16 and q8_0 rows, and the scalar path reads any row decoded.
bool CpuBackend::supports_latent_type(LatentType) const { return true; }

void CpuBackend::mla_kv_append(const MlaParams& p, const Act& kv_a, const TensorView& kv_norm, LatentCache& cache,
                               int64_t il, int64_t pos0, int64_t n) {
  const int64_t R = p.kv_lora_rank, P = p.qk_rope_head_dim;
  const float* freqs = p.rope_freqs.f32();
  const Act layer = cache.layer(il);
  const bool f32 = cache.type == LatentType::kF32;
  float* row = f32 ? nullptr : scratch(kv_row_, sz(R + P));  // the f32 row before it is stored
  for (int64_t t = 0; t < n; ++t) {
    const float* kv = kv_a.row(t);
    float* cached = f32 ? layer.row(pos0 + t) : row;
    moe::rms_norm(kv, kv_norm.f32(), R, p.rms_norm_eps, cached);
    std::memcpy(cached + R, kv + R, sz(P) * sizeof(float));
    rope_pairs_apply(cached + R, P, freqs, static_cast<float>(pos0 + t), p.rope_mscale);
    if (!f32) latent_row_encode(cache.type, row, R + P, layer.row(pos0 + t));
  }
}

void CpuBackend::mla_kv_shift(const MlaParams& p, LatentCache& cache, int64_t il, int64_t src0, int64_t dst0,
                              int64_t n) {
  MOE_ASSERT(dst0 <= src0 && src0 + n <= cache.n_ctx, "mla_kv_shift: rows %lld.. to %lld..", static_cast<long long>(src0),
             static_cast<long long>(dst0));
  const int64_t R = p.kv_lora_rank, P = p.qk_rope_head_dim;
  const float* freqs = p.rope_freqs.f32();
  const Act layer = cache.layer(il);
  const bool f32 = cache.type == LatentType::kF32;
  float* row = scratch(kv_row_, sz(R + P));
  for (int64_t t = 0; t < n; ++t) {
    float* dst = layer.row(dst0 + t);
    if (dst0 != src0) std::memcpy(dst, layer.row(src0 + t), sz(layer.cols) * sizeof(float));
    // The rotated pairs: decoded, turned by the difference of the two
    // angles as rope_pairs_apply computes them (in double, so the result is
    // RoPE at the new position up to the rounding of one rotation), stored
    // again. Re-encoding the unrotated values gives them back unchanged (a
    // q8_0 block's scale and quants survive a round trip).
    float* x = f32 ? dst + R : row + R;
    if (!f32) latent_row_decode(cache.type, dst, R + P, row);
    for (int64_t i = 0; i < P / 2; ++i) {
      const double a_old = static_cast<float>(src0 + t) * freqs[i], a_new = static_cast<float>(dst0 + t) * freqs[i];
      const double c = std::cos(a_new - a_old), s = std::sin(a_new - a_old);
      const double x0 = x[2 * i], x1 = x[2 * i + 1];
      x[2 * i] = static_cast<float>(x0 * c - x1 * s);
      x[2 * i + 1] = static_cast<float>(x0 * s + x1 * c);
    }
    if (!f32) latent_row_encode(cache.type, row, R + P, dst);
  }
}

// One product per head: for h < n_heads, in[t] = gather(h, t) (in_dim
// floats), out = W_h in over n tokens (matmul_serial), then scatter(h, t,
// out[t]) (out_dim floats). Heads are independent: a thread per group of
// heads, each with its own buffers.
template <typename Gather, typename Scatter>
void CpuBackend::per_head_products(const TensorView& W, int64_t n_heads, int64_t n, int64_t in_dim, int64_t out_dim,
                                   const Gather& gather, const Scatter& scatter) {
  const int64_t dim = std::max(in_dim, out_dim);
  float* in_all = scratch(head_in_, sz(pool_.size() * n * dim));
  float* out_all = scratch(head_out_, sz(pool_.size() * n * dim));
  const size_t act_bytes = (matmul_scratch_bytes(W.matrix(0), n, !batch_invariant_) + 63) / 64 * 64;
  uint8_t* act_all = scratch(head_act_, act_bytes * sz(pool_.size()));
  const auto heads = [&](int64_t h0, int64_t h1, int thread) {
    float* in = in_all + thread * n * dim;
    float* out = out_all + thread * n * dim;
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t t = 0; t < n; ++t) gather(h, t, &in[t * in_dim]);
      matmul_serial(W.matrix(h), in, n, out, act_all + sz(thread) * act_bytes, !batch_invariant_);  // [n][out_dim]
      for (int64_t t = 0; t < n; ++t) scatter(h, t, &out[t * out_dim]);
    }
  };
  if (n_heads * n * in_dim * out_dim < kMinParallelMacs) heads(0, n_heads, 0);
  else pool_.parallel_for(n_heads, heads);
}

void CpuBackend::mla_query_absorb(const MlaParams& p, const Act& q, const TensorView& wk_b, int64_t pos0, int64_t n,
                                  Act q_abs) {
  const int64_t R = p.kv_lora_rank, P = p.qk_rope_head_dim, NOPE = p.qk_nope_head_dim;
  const int64_t QK = p.qk_head_dim(), L = p.latent_dim();
  const float* freqs = p.rope_freqs.f32();
  per_head_products(
      wk_b, p.n_heads, n, NOPE, R,
      [&](int64_t h, int64_t t, float* in) { std::memcpy(in, q.row(t) + h * QK, sz(NOPE) * sizeof(float)); },
      [&](int64_t h, int64_t t, const float* out) {
        float* qa = q_abs.row(t) + h * L;
        std::memcpy(qa, out, sz(R) * sizeof(float));
        std::memcpy(qa + R, q.row(t) + h * QK + NOPE, sz(P) * sizeof(float));
        rope_pairs_apply(qa + R, P, freqs, static_cast<float>(pos0 + t), p.rope_mscale);
      });
}

void CpuBackend::mla_attention(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il,
                               int64_t pos0, int64_t n, Act o_lat) {
  const MlaAttendKernels k = mla_attend_kernels(latent_ggml_type(cache.type));
  if (n >= kAttnBlockMinTokens && k.block) return mla_attention_blocks(p, q_abs, cache, il, pos0, n, o_lat, k.block);
  if (n < kAttnBlockMinTokens && k.range) return mla_attention_split(p, q_abs, cache, il, pos0, n, o_lat, k.range);
  if (cache.type == LatentType::kF32) return mla_attention_heads(p, q_abs, cache, il, pos0, n, o_lat);
  // No kernel reads this type here (no AVX-512): the rows the tokens see,
  // decoded to f32, for the scalar path.
  const int64_t L = p.latent_dim(), n_kv = pos0 + n;
  LatentCache decoded;
  decoded.n_layers = 1;
  decoded.n_ctx = n_kv;
  decoded.rows = Act{scratch(decoded_rows_, sz(n_kv * L)), n_kv, L, L, Device{}};
  const Act layer = cache.layer(il);
  for (int64_t s = 0; s < n_kv; ++s) latent_row_decode(cache.type, layer.row(s), L, decoded.rows.row(s));
  mla_attention_heads(p, q_abs, decoded, 0, pos0, n, o_lat);
}

void CpuBackend::mla_attention_heads(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il,
                                     int64_t pos0, int64_t n, Act o_lat) {
  const int64_t H = p.n_heads, R = p.kv_lora_rank, L = p.latent_dim();
  const int64_t groups = (H + kAttnHeadGroup - 1) / kAttnHeadGroup;
  const int64_t n_ctx_max = pos0 + n;
  float* scores_all = scratch(scores_, sz(pool_.size() * kAttnHeadGroup * n_ctx_max));
  const Act layer = cache.layer(il);
  // A token's cost grows with its position: jobs are taken from the last
  // token down, so the threads finish together.
  const auto job = [&](int64_t j, int thread) {
    const int64_t i = n * groups - 1 - j;
    const int64_t t = i / groups, h0 = (i % groups) * kAttnHeadGroup;
    MlaAttendArgs a;
    a.q = q_abs.row(t) + h0 * L;
    a.n_heads = std::min(kAttnHeadGroup, H - h0);
    a.q_stride = L;
    a.kv = layer.row(0);
    a.kv_stride = layer.stride;
    a.n_kv = pos0 + t + 1;
    a.dim_qk = L;
    a.dim_v = R;
    a.scale = p.softmax_scale;
    a.scores = scores_all + thread * kAttnHeadGroup * n_ctx_max;
    a.out = o_lat.row(t) + h0 * R;
    a.out_stride = R;
    mla_attend_heads(a);
  };
  if (n * H * n_ctx_max * L < kMinParallelMacs) {
    for (int64_t j = 0; j < n * groups; ++j) job(j, 0);
  } else {
    pool_.parallel_jobs(n * groups, job);
  }
}

namespace {
MlaAttendBlockArgs attend_args(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t t0,
                               int64_t n_tok, int64_t h0, int64_t n_heads, int64_t pos0, Act o_lat) {
  const int64_t R = p.kv_lora_rank, L = p.latent_dim();
  MlaAttendBlockArgs a;
  a.q = q_abs.row(t0) + h0 * L;
  a.n_tok = n_tok;
  a.n_heads = n_heads;
  a.q_tok_stride = q_abs.stride;
  a.q_head_stride = L;
  a.kv = cache.layer(il).row(0);
  a.kv_stride = cache.row_elems();
  a.n_kv0 = pos0 + t0 + 1;
  a.dim_qk = L;
  a.dim_v = R;
  a.scale = p.softmax_scale;
  a.scratch = nullptr;
  a.out = o_lat.row(t0) + h0 * R;
  a.out_tok_stride = o_lat.stride;
  a.out_head_stride = R;
  return a;
}
}  // namespace

void CpuBackend::mla_attention_blocks(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il,
                                      int64_t pos0, int64_t n, Act o_lat, MlaAttendBlockFn block) {
  const int64_t H = p.n_heads;
  const int64_t t_blocks = (n + kAttnBlockTokens - 1) / kAttnBlockTokens;
  const int64_t h_blocks = (H + kAttnBlockHeads - 1) / kAttnBlockHeads;
  const size_t per_thread =
      mla_attend_block_scratch_floats(kAttnBlockTokens, kAttnBlockHeads, p.latent_dim(), p.kv_lora_rank);
  float* scratch_all = scratch(scores_, sz(pool_.size()) * per_thread);
  // Later tokens cost more: jobs are taken from the last block down.
  const auto job = [&](int64_t j, int thread) {
    const int64_t i = t_blocks * h_blocks - 1 - j;
    const int64_t t0 = (i / h_blocks) * kAttnBlockTokens, h0 = (i % h_blocks) * kAttnBlockHeads;
    MlaAttendBlockArgs a = attend_args(p, q_abs, cache, il, t0, std::min(kAttnBlockTokens, n - t0), h0,
                                       std::min(kAttnBlockHeads, H - h0), pos0, o_lat);
    a.scratch = scratch_all + sz(thread) * per_thread;
    block(a);
  };
  pool_.parallel_jobs(t_blocks * h_blocks, job);
}

void CpuBackend::mla_attention_split(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il,
                                     int64_t pos0, int64_t n, Act o_lat, MlaAttendRangeFn range) {
  const int64_t H = p.n_heads, R = p.kv_lora_rank, rows = n * H;
  const int64_t n_kv = pos0 + n;  // the last token's keys; the others see fewer
  const int64_t n_parts = std::clamp<int64_t>((n_kv + kAttnSplitKeys - 1) / kAttnSplitKeys, 1, kAttnMaxParts);
  const int64_t part_keys = (n_kv + n_parts - 1) / n_parts;
  const size_t state_floats = mla_attend_state_floats(rows, R);
  const size_t scores_floats = mla_attend_chunk_scratch_floats(rows, p.latent_dim());
  float* all = scratch(scores_, sz(n_parts) * state_floats + sz(pool_.size()) * scores_floats);
  MlaAttendState parts[kAttnMaxParts];
  for (int64_t j = 0; j < n_parts; ++j) parts[j] = mla_attend_state_carve(all + sz(j) * state_floats, rows);
  float* scores_all = all + sz(n_parts) * state_floats;
  const MlaAttendBlockArgs base = attend_args(p, q_abs, cache, il, 0, n, 0, H, pos0, o_lat);
  const auto job = [&](int64_t j, int thread) {
    MlaAttendBlockArgs a = base;
    a.scratch = scores_all + sz(thread) * scores_floats;
    mla_attend_state_init(parts[j], rows, R);
    range(a, j * part_keys, std::min(n_kv, (j + 1) * part_keys), parts[j]);
  };
  if (rows * n_kv * p.latent_dim() < kMinParallelMacs) {
    for (int64_t j = 0; j < n_parts; ++j) job(j, 0);
  } else {
    pool_.parallel_jobs(n_parts, job);
  }
  mla_attend_merge(base, parts, static_cast<int>(n_parts));
}

void CpuBackend::mla_output_lift(const MlaParams& p, const Act& o_lat, const TensorView& wv_b, int64_t n, Act v) {
  const int64_t R = p.kv_lora_rank, V = p.v_head_dim;
  per_head_products(
      wv_b, p.n_heads, n, R, V,
      [&](int64_t h, int64_t t, float* in) { std::memcpy(in, o_lat.row(t) + h * R, sz(R) * sizeof(float)); },
      [&](int64_t h, int64_t t, const float* out) { std::memcpy(v.row(t) + h * V, out, sz(V) * sizeof(float)); });
}

void CpuBackend::dsa_keys_append(const DsaParams& p, const Act& k_raw, const TensorView& norm, const TensorView& norm_b,
                                 Act keys, int64_t pos0, int64_t n) {
  std::vector<float> key(sz(p.head_dim));
  for (int64_t t = 0; t < n; ++t) {
    dsa_key(p, k_raw.row(t), norm.f32(), norm_b.f32(), static_cast<float>(pos0 + t), key.data());
    dsa_key_store(p, key.data(), keys.row(pos0 + t));
  }
}

void CpuBackend::dsa_keys_shift(const DsaParams& p, Act keys, int64_t src0, int64_t dst0, int64_t n) {
  MOE_ASSERT(dst0 <= src0 && src0 + n <= keys.rows, "dsa_keys_shift: rows %lld.. to %lld..", static_cast<long long>(src0),
             static_cast<long long>(dst0));
  std::vector<float> key(sz(p.head_dim));
  for (int64_t t = 0; t < n; ++t) {
    latent_row_decode(p.key_type, keys.row(src0 + t), p.head_dim, key.data());
    dsa_key_shift(p, key.data(), src0 + t, dst0 + t);
    dsa_key_store(p, key.data(), keys.row(dst0 + t));
  }
}

void CpuBackend::dsa_select(const DsaParams& p, const Act& q_raw, const Act& w, const Act& keys, int64_t pos0, int64_t n,
                            Ids selected) {
  const int64_t H = p.n_heads, D = p.head_dim, n_kv = pos0 + n;
  float* q = scratch(sparse_, sz(H * D + n_kv));
  float* scores = q + H * D;
  int32_t* order = scratch(sparse_order_, sz(n_kv));
  const DsaScoresFn fast = dsa_scores_kernel();
  const DsaScoresFn scores_fn = fast ? fast : dsa_scores;
  // Token by token, the threads sharing its positions: generation has one
  // token over the whole context.
  for (int64_t t = 0; t < n; ++t) {
    const int64_t seen = pos0 + t + 1;
    std::memcpy(q, q_raw.row(t), sz(H * D) * sizeof(float));
    for (int64_t h = 0; h < H; ++h) dsa_rotate(p, q + h * D, static_cast<float>(pos0 + t));
    const auto part = [&](int64_t s0, int64_t s1, int) {
      scores_fn(p, q, w.row(t), keys.row(s0), keys.stride, s1 - s0, scores + s0);
    };
    if (seen * H * D < kMinParallelMacs) part(0, seen, 0);
    else pool_.parallel_for(seen, part);
    int32_t* out = selected.row(t);
    const int64_t k = dsa_top_k(scores, seen, p.top_k, out, order);
    std::fill(out + k, out + p.top_k, -1);
  }
}

// Each token's chosen rows gathered, in the cache's own type, into a cache
// of their own and attended as that whole cache (the same kernels, threads
// and splits as dense attention over that type: bf16 rows keep AVX512-BF16's
// products, q8_0 rows a quarter of the copying): a token's attention costs
// top_k rows at any context.
void CpuBackend::mla_attention_sparse(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il,
                                      int64_t pos0, int64_t n, const Ids& selected, Act o_lat) {
  const int64_t K = selected.cols;
  const Act layer = cache.layer(il);
  const int64_t cols = layer.cols;  // floats holding one stored row
  float* rows = scratch(sparse_, sz(K * cols));
  for (int64_t t = 0; t < n; ++t) {
    const int32_t* sel = selected.row(t);
    int64_t m = 0;
    for (; m < K && sel[m] >= 0; ++m) {
      MOE_ASSERT(sel[m] <= pos0 + t, "sparse attention: token %lld chose position %d after its own",
                 static_cast<long long>(pos0 + t), sel[m]);
      std::memcpy(rows + m * cols, layer.row(sel[m]), sz(cols) * sizeof(float));
    }
    LatentCache chosen;
    chosen.type = cache.type;
    chosen.n_layers = 1;
    chosen.n_ctx = m;
    chosen.rows = Act{rows, m, cols, cols, Device{}};
    mla_attention(p, q_abs.rows_from(t, 1), chosen, 0, m - 1, 1, o_lat.rows_from(t, 1));  // sees rows [0, m)
  }
}

bool CpuBackend::mla_decompressed_pays(const MlaParams& p, int64_t pos0, int64_t n) const {
  if (mla_prompt_form_ == MlaPromptForm::kAbsorbed || n < 2) return false;  // generation stays absorbed
  if (!mla_attend_block_kernel() || !gemm_f32_kernel()) return false;
  if (mla_prompt_form_ == MlaPromptForm::kDecompressed) return mla_decompressed_scratch_floats(p, pos0, n) < (size_t{32} << 20);
  return moe::mla_decompressed_pays(p, pos0, n);
}

void CpuBackend::mla_attention_decompressed(const MlaParams& p, const Act& q, const TensorView& wk_b,
                                            const TensorView& wv_b, const LatentCache& cache, int64_t il, int64_t pos0,
                                            int64_t n, Act v) {
  float* s = scratch(decompressed_, sz(pool_.size()) * mla_decompressed_scratch_floats(p, pos0, n));
  moe::mla_attention_decompressed(p, q, wk_b, wv_b, cache, il, pos0, n, v, pool_, s,
                                  {mla_attend_block_kernel(), gemm_f32_kernel()});
}

void CpuBackend::moe_route(const MoeRouteParams& p, const Act& logits, int64_t n, Ids ids, Act weights) {
  float* s = scratch(route_scratch_, sz(2 * p.n_experts));
  for (int64_t t = 0; t < n; ++t) moe_route_topk(p, logits.row(t), ids.row(t), weights.row(t), s);
}

void CpuBackend::grouped_experts(const ExpertWeights& w, const Act& h, const ExpertDispatch& d, Act out) {
  experts_.run(w, h.data, h.stride, d, out.data, out.stride, pool_, !batch_invariant_);
}

// out[t] = sum_k w[t][k] * slot_out[t][k], per token in slot order, as
// llama.cpp adds its [K][D] expert outputs, so the float rounding matches.
void CpuBackend::moe_combine(const Act& slot_out, const Act& weights, int64_t top_k, int64_t n, Act out) {
  const int64_t D = out.cols;
  for (int64_t t = 0; t < n; ++t) {
    float* o = out.row(t);
    for (int64_t k = 0; k < top_k; ++k) {
      const float wgt = weights.row(t)[k];
      const float* y = slot_out.row(t * top_k + k);
      if (k == 0) for (int64_t j = 0; j < D; ++j) o[j] = wgt * y[j];
      else for (int64_t j = 0; j < D; ++j) o[j] += wgt * y[j];
    }
  }
}

}  // namespace moe
