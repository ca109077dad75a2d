// The CPU backend: every op of the seam on the CPU kernels of this folder,
// multithreaded on its own pool. Weights are read where they are (the file
// mapping, zero copy); buffers and scratch are host memory it owns.
//
// A second instance can stand in for a device (`--device cpu-device`): it
// then gets its own threads, copies the weights placed on it into its own
// memory, and the hybrid MoE step runs exactly as it would with a GPU, which
// is how that path is tested without one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/attention_block.h"
#include "cpu/moe_experts.h"
#include "runtime/backend.h"

namespace moe {

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::string name, int n_threads);
  ~CpuBackend() override;

  std::string name() const override { return name_; }
  Device device() const override { return Device{}; }
  std::string describe() const override;
  ThreadPool& pool() { return pool_; }

  bool supports_latent_type(LatentType t) const override;
  void set_batch_invariant(bool on) override { batch_invariant_ = on; }
  Act alloc(int64_t rows, int64_t cols) override;
  Ids alloc_ids(int64_t rows, int64_t cols) override;
  uint8_t* alloc_weight_bytes(size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void synchronize() override {}
  size_t weight_bytes() const override { return weight_bytes_; }
  void copy_rows(const Act& src, Act dst, int64_t n) override;
  void mla_kv_shift(const MlaParams& p, LatentCache& cache, int64_t il, int64_t src0, int64_t dst0, int64_t n) override;
  void gather_rows_to_host(const Act& src, const int32_t* rows, int64_t n, float* dst) override;
  void scatter_rows_from_host(const float* src, const int32_t* rows, int64_t n, Act dst) override;

  void embed(const TensorView& table, const int32_t* tokens, int64_t n, Act x) override;
  void rms_norm(const Act& x, const TensorView& w, float eps, int64_t n, Act y) override;
  void matmul(const TensorView& W, const Act& x, int64_t n, Act y) override;
  void add(Act x, const Act& y, int64_t n) override;
  void swiglu(Act g, const Act& u, int64_t n) override;
  void output_head(const TensorView& W, const Act& x, int64_t n, float* logits) override;
  void mla_kv_append(const MlaParams& p, const Act& kv_a, const TensorView& kv_norm, LatentCache& cache, int64_t il,
                     int64_t pos0, int64_t n) override;
  void mla_query_absorb(const MlaParams& p, const Act& q, const TensorView& wk_b, int64_t pos0, int64_t n,
                        Act q_abs) override;
  void mla_attention(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t pos0,
                     int64_t n, Act o_lat) override;
  void mla_output_lift(const MlaParams& p, const Act& o_lat, const TensorView& wv_b, int64_t n, Act v) override;
  void mla_attention_sparse(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t pos0,
                            int64_t n, const Ids& selected, Act o_lat) override;
  void dsa_keys_append(const DsaParams& p, const Act& k_raw, const TensorView& norm, const TensorView& norm_b, Act keys,
                       int64_t pos0, int64_t n) override;
  void dsa_keys_shift(const DsaParams& p, Act keys, int64_t src0, int64_t dst0, int64_t n) override;
  void dsa_select(const DsaParams& p, const Act& q_raw, const Act& w, const Act& keys, int64_t pos0, int64_t n,
                  Ids selected) override;
  bool mla_decompressed_pays(const MlaParams& p, int64_t pos0, int64_t n) const override;
  void mla_attention_decompressed(const MlaParams& p, const Act& q, const TensorView& wk_b, const TensorView& wv_b,
                                  const LatentCache& cache, int64_t il, int64_t pos0, int64_t n, Act v) override;
  // Which form prompts take: by cost (kAuto), or always one (tests and
  // benchmarks; MOE_MLA_PROMPT=absorbed|decompressed sets it at start).
  enum class MlaPromptForm { kAuto, kAbsorbed, kDecompressed };
  void set_mla_prompt_form(MlaPromptForm f) { mla_prompt_form_ = f; }
  void moe_route(const MoeRouteParams& p, const Act& logits, int64_t n, Ids ids, Act weights) override;
  void grouped_experts(const ExpertWeights& w, const Act& h, const ExpertDispatch& d, Act out) override;
  void moe_combine(const Act& slot_out, const Act& weights, int64_t top_k, int64_t n, Act out) override;

  // DeepSeek-V4 (cpu_backend_dsv4.cpp, on the kernels of dsv4_ops.h).
  bool supports_deepseek4() const override { return true; }
  void hc_init(const Act& e, int64_t hc, int64_t n, Act x) override;
  void hc_pre(const HyperConnParams& p, const Act& x, const Act& mixes, int64_t n, Act h, Act post, Act comb) override;
  void hc_post(const HyperConnParams& p, const Act& out, const Act& post, const Act& comb, int64_t n, Act x) override;
  void hc_head(const HyperConnParams& p, const Act& x, const Act& mixes, int64_t n, Act h) override;
  void dsv4_qkv(const Dsv4AttnParams& p, Act q, const Act& kv, Dsv4LayerCache& c, int64_t pos0, int64_t n) override;
  void dsv4_compress(const Dsv4AttnParams& p, const Act& kv, const Act& score, const TensorView& ape,
                     const TensorView& norm, bool indexer, Dsv4LayerCache& c, int64_t pos0, int64_t n) override;
  void dsv4_index_select(const Dsv4AttnParams& p, Act iq, const Act& w, const Dsv4LayerCache& c, int64_t pos0,
                         int64_t n, Ids selected) override;
  void dsv4_attention(const Dsv4AttnParams& p, const Act& q, const Dsv4LayerCache& c, const TensorView& sinks,
                      const Ids& selected, int64_t pos0, int64_t n, Act o) override;
  void dsv4_grouped_output(const TensorView& wo_a, int64_t groups, const Act& o, int64_t n, Act oa) override;
  void moe_route_hashed(const MoeRouteParams& p, const TensorView& tid2eid, const Act& logits, const int32_t* tokens,
                        int64_t n, Ids ids, Act weights) override;
  void swiglu_clamped(Act g, const Act& u, float limit, int64_t n) override;

 private:
  void* alloc_bytes(size_t bytes);
  template <typename Gather, typename Scatter>
  void per_head_products(const TensorView& W, int64_t n_heads, int64_t n, int64_t in_dim, int64_t out_dim,
                         const Gather& gather, const Scatter& scatter);
  // Prompts: attention in blocks of tokens and heads (cpu/attention_block.h).
  void mla_attention_blocks(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t pos0,
                            int64_t n, Act o_lat, MlaAttendBlockFn block);
  // The per-token reference (CPUs without AVX-512).
  void mla_attention_heads(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t pos0,
                           int64_t n, Act o_lat);
  // Generation: the cached rows in parts, one per job, merged at the end.
  void mla_attention_split(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t pos0,
                           int64_t n, Act o_lat, MlaAttendRangeFn range);
  // Scratch grows to the largest request once (the first batch of each
  // size); later calls allocate nothing.
  template <typename T>
  T* scratch(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
  std::string name_;
  ThreadPool pool_;
  bool batch_invariant_ = false;  // set_batch_invariant: products on the per-row kernels only
  MlaPromptForm mla_prompt_form_ = MlaPromptForm::kAuto;
  std::vector<void*> blocks_;  // everything alloc'd, freed with the backend
  size_t weight_bytes_ = 0;
  std::vector<uint8_t> mm_scratch_;    // quantized activations of a product
  std::vector<float> head_in_, head_out_;  // [threads][n][dim]
  std::vector<uint8_t> head_act_;      // [threads][quantized activations]
  std::vector<float> scores_;          // attention: scores and running states
  std::vector<float> route_scratch_;   // [2 * n_experts]
  std::vector<float> kv_row_;          // a latent row in f32 before it is stored in the cache's type
  std::vector<float> decoded_rows_;    // a layer's cached rows decoded to f32 (no kernel for its type)
  std::vector<float> decompressed_;    // [threads][a head's rebuilt rows, weights, queries]
  std::vector<float> sparse_;          // [threads][selected rows, scores] (DeepSeek Sparse Attention)
  std::vector<int32_t> sparse_order_;  // [threads][positions] (the indexer's top-k)
  std::vector<float> dsv4_in_, dsv4_out_;  // DeepSeek-V4's grouped output: one group's rows
  std::vector<float> dsv4_row_;            // one V4 cache row before it is stored in the cache type
  std::vector<float> dsv4_decoded_;        // [threads][rows][head_dim]: V4 cache rows read back as f32
  std::vector<float> dsv4_hc_old_;         // [threads][hc * width]: hc_post's copy of the streams
  std::vector<float> dsv4_scores_;         // [threads][keys + compressed rows]
  std::vector<const float*> dsv4_keys_;    // [threads][window + compressed rows]
  GroupedExperts experts_;
};

}  // namespace moe
