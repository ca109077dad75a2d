// A backend that computes nothing itself: it passes every op to the backend
// it wraps and, on the way, adds up what llama-imatrix adds up (its
// collect_imatrix callback), the squared activations entering each weight
// matrix of a layer:
//   - a product W x over >= 16 tokens adds x^2 to W's sums, one count per token
//     (llama-imatrix skips smaller batches);
//   - the per-head products of MLA (attn_k_b: the q_nope of each head;
//     attn_v_b: each head's attention output in the latent space) keep one
//     slice of sums per head and one count per token;
//   - routed experts keep one slice and one count per expert, from the tokens
//     routed to it: gate and up see the hidden state, down the SwiGLU output
//     (clamped where the model clamps it, DeepSeek-V4), which this backend
//     recomputes per expert to see it;
//   - DeepSeek-V4's grouped output projection keeps one slice per group.
// Only tensors named "blk.*" are counted, and output.weight when asked.
//
// The sums live in host memory (ImatrixSums, convert/imatrix_file.h), owned
// by the caller. Activations are read with copy_to_host, so any backend can
// be wrapped; moe-imatrix wraps the CPU.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "convert/imatrix_file.h"
#include "runtime/backend.h"

namespace moe {

class ImatrixCollector final : public Backend {
 public:
  ImatrixCollector(std::unique_ptr<Backend> inner, ImatrixSums& sums, bool process_output);

  std::string name() const override { return inner_->name(); }
  Device device() const override { return inner_->device(); }
  std::string describe() const override { return inner_->describe() + ", collecting an importance matrix"; }
  bool supports_latent_type(LatentType t) const override { return inner_->supports_latent_type(t); }
  void set_batch_invariant(bool on) override { inner_->set_batch_invariant(on); }
  Act alloc(int64_t rows, int64_t cols) override { return inner_->alloc(rows, cols); }
  Ids alloc_ids(int64_t rows, int64_t cols) override { return inner_->alloc_ids(rows, cols); }
  uint8_t* alloc_weight_bytes(size_t bytes) override { return inner_->alloc_weight_bytes(bytes); }
  void copy_from_host(void* dst, const void* src, size_t bytes) override { inner_->copy_from_host(dst, src, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { inner_->copy_to_host(dst, src, bytes); }
  void synchronize() override { inner_->synchronize(); }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  void copy_rows(const Act& src, Act dst, int64_t n) override { inner_->copy_rows(src, dst, n); }
  void mla_kv_shift(const MlaParams& p, LatentCache& cache, int64_t il, int64_t src0, int64_t dst0, int64_t n) override {
    inner_->mla_kv_shift(p, cache, il, src0, dst0, n);
  }
  void gather_rows_to_host(const Act& src, const int32_t* rows, int64_t n, float* dst) override {
    inner_->gather_rows_to_host(src, rows, n, dst);
  }
  void scatter_rows_from_host(const float* src, const int32_t* rows, int64_t n, Act dst) override {
    inner_->scatter_rows_from_host(src, rows, n, dst);
  }
  void embed(const TensorView& table, const int32_t* tokens, int64_t n, Act x) override {
    inner_->embed(table, tokens, n, x);
  }
  void rms_norm(const Act& x, const TensorView& w, float eps, int64_t n, Act y) override {
    inner_->rms_norm(x, w, eps, n, y);
  }
  void add(Act x, const Act& y, int64_t n) override { inner_->add(x, y, n); }
  void swiglu(Act g, const Act& u, int64_t n) override { inner_->swiglu(g, u, n); }
  void mla_kv_append(const MlaParams& p, const Act& kv_a, const TensorView& kv_norm, LatentCache& cache, int64_t il,
                     int64_t pos0, int64_t n) override {
    inner_->mla_kv_append(p, kv_a, kv_norm, cache, il, pos0, n);
  }
  void mla_attention(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t pos0,
                     int64_t n, Act o_lat) override {
    inner_->mla_attention(p, q_abs, cache, il, pos0, n, o_lat);
  }
  void mla_attention_sparse(const MlaParams& p, const Act& q_abs, const LatentCache& cache, int64_t il, int64_t pos0,
                            int64_t n, const Ids& selected, Act o_lat) override {
    inner_->mla_attention_sparse(p, q_abs, cache, il, pos0, n, selected, o_lat);
  }
  void dsa_keys_append(const DsaParams& p, const Act& k_raw, const TensorView& norm, const TensorView& norm_b, Act keys,
                       int64_t pos0, int64_t n) override {
    inner_->dsa_keys_append(p, k_raw, norm, norm_b, keys, pos0, n);
  }
  void dsa_keys_shift(const DsaParams& p, Act keys, int64_t src0, int64_t dst0, int64_t n) override {
    inner_->dsa_keys_shift(p, keys, src0, dst0, n);
  }
  void dsa_select(const DsaParams& p, const Act& q_raw, const Act& w, const Act& keys, int64_t pos0, int64_t n,
                  Ids selected) override {
    inner_->dsa_select(p, q_raw, w, keys, pos0, n, selected);
  }
  // The absorbed form only: its products' inputs (q_nope into W_UK, the
  // latent output into W_UV) are what llama.cpp's imatrix records.
  bool mla_decompressed_pays(const MlaParams&, int64_t, int64_t) const override { return false; }
  void mla_attention_decompressed(const MlaParams& p, const Act& q, const TensorView& wk_b, const TensorView& wv_b,
                                  const LatentCache& cache, int64_t il, int64_t pos0, int64_t n, Act v) override {
    inner_->mla_attention_decompressed(p, q, wk_b, wv_b, cache, il, pos0, n, v);
  }
  void moe_route(const MoeRouteParams& p, const Act& logits, int64_t n, Ids ids, Act weights) override {
    inner_->moe_route(p, logits, n, ids, weights);
  }
  void moe_combine(const Act& slot_out, const Act& weights, int64_t top_k, int64_t n, Act out) override {
    inner_->moe_combine(slot_out, weights, top_k, n, out);
  }

  // DeepSeek-V4's ops pass through (their products with weights run on
  // matmul, or on dsv4_grouped_output, observed below).
  bool supports_deepseek4() const override { return inner_->supports_deepseek4(); }
  void hc_init(const Act& e, int64_t hc, int64_t n, Act x) override { inner_->hc_init(e, hc, n, x); }
  void hc_pre(const HyperConnParams& p, const Act& x, const Act& mixes, int64_t n, Act h, Act post, Act comb) override {
    inner_->hc_pre(p, x, mixes, n, h, post, comb);
  }
  void hc_post(const HyperConnParams& p, const Act& out, const Act& post, const Act& comb, int64_t n, Act x) override {
    inner_->hc_post(p, out, post, comb, n, x);
  }
  void hc_head(const HyperConnParams& p, const Act& x, const Act& mixes, int64_t n, Act h) override {
    inner_->hc_head(p, x, mixes, n, h);
  }
  void dsv4_qkv(const Dsv4AttnParams& p, Act q, const Act& kv, Dsv4LayerCache& c, int64_t pos0, int64_t n) override {
    inner_->dsv4_qkv(p, q, kv, c, pos0, n);
  }
  void dsv4_compress(const Dsv4AttnParams& p, const Act& kv, const Act& score, const TensorView& ape,
                     const TensorView& norm, bool indexer, Dsv4LayerCache& c, int64_t pos0, int64_t n) override {
    inner_->dsv4_compress(p, kv, score, ape, norm, indexer, c, pos0, n);
  }
  void dsv4_index_select(const Dsv4AttnParams& p, Act iq, const Act& w, const Dsv4LayerCache& c, int64_t pos0,
                         int64_t n, Ids selected) override {
    inner_->dsv4_index_select(p, iq, w, c, pos0, n, selected);
  }
  void dsv4_attention(const Dsv4AttnParams& p, const Act& q, const Dsv4LayerCache& c, const TensorView& sinks,
                      const Ids& selected, int64_t pos0, int64_t n, Act o) override {
    inner_->dsv4_attention(p, q, c, sinks, selected, pos0, n, o);
  }
  void moe_route_hashed(const MoeRouteParams& p, const TensorView& tid2eid, const Act& logits, const int32_t* tokens,
                        int64_t n, Ids ids, Act weights) override {
    inner_->moe_route_hashed(p, tid2eid, logits, tokens, n, ids, weights);
  }
  void swiglu_clamped(Act g, const Act& u, float limit, int64_t n) override { inner_->swiglu_clamped(g, u, limit, n); }

  // The observed ops.
  void matmul(const TensorView& W, const Act& x, int64_t n, Act y) override;
  void output_head(const TensorView& W, const Act& x, int64_t n, float* logits) override;
  void mla_query_absorb(const MlaParams& p, const Act& q, const TensorView& wk_b, int64_t pos0, int64_t n,
                        Act q_abs) override;
  void mla_output_lift(const MlaParams& p, const Act& o_lat, const TensorView& wv_b, int64_t n, Act v) override;
  void grouped_experts(const ExpertWeights& w, const Act& h, const ExpertDispatch& d, Act out) override;
  // V4's grouped output projection: one slice per group (its part of o), one
  // count per token, as llama-imatrix records W_oa's batched product.
  void dsv4_grouped_output(const TensorView& wo_a, int64_t groups, const Act& o, int64_t n, Act oa) override;

 private:
  // The first n rows of x, copied to the host into buf (rows x.stride apart).
  const float* host_rows(const Act& x, int64_t n, std::vector<float>& buf);
  // Adds n tokens of one matrix's inputs (row t at in + t * stride) to
  // slice `mat` of W's entry, which has n_mat slices.
  void add_dense(const std::string& name, int64_t n_mat, int64_t mat, int64_t cols, const float* in, int64_t stride,
                 int64_t n, bool count);
  ImatrixEntry& entry(const std::string& name, int64_t cols, int64_t n_mat, int64_t n_counts);

  std::unique_ptr<Backend> inner_;
  ImatrixSums& sums_;
  bool process_output_;
  std::mutex mu_;              // the hybrid path may run host experts on a worker
  std::vector<float> host_;    // activations copied to the host
  std::vector<float> act_;     // one expert's SwiGLU output on the host
  std::vector<float> rows_;    // one expert's rows
  Act gate_, up_, in_;         // scratch for recomputing one expert's SwiGLU
};

}  // namespace moe
