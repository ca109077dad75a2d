// The DeepSeek-V4 model (GGUF architecture "deepseek4"): loading, and the
// forward pass over a batch of tokens of one or more sequences.
//
// Per layer (DeepSeek-V4 report; llama.cpp's models/deepseek4.cpp):
//   X: hc streams of the residual (copies of the embedding at the start)
//   a = RMSNorm(HC_pre(X)); X = HC_post(Attention(a), X)
//   f = RMSNorm(HC_pre(X)); X = HC_post(MoE(f) + Shared(f), X)
// and at the end logits = W_out RMSNorm(HC_head(X)).
// Attention: q = RMSNorm_h(W_qb RMSNorm(W_qa a)), kv = RMSNorm(W_kv a) one
// shared head (K = V), RoPE on the last rope_dim values; each token attends
// with sinks to its last sliding_window raw rows plus compressed rows of its
// layer's kind (none, the indexer's top-k of the 1-in-4 rows, or every
// 1-in-128 row); the output loses its rotation, then goes through the
// grouped low-rank projection W_ob [W_oa,g o_g]_g.
//
// Every step runs on the session's backend, through the seam's DeepSeek-V4
// ops (runtime/backend.h: hyper-connections, the compressors, the indexer,
// attention with sinks, grouped output, routing); a backend without them
// refuses the session when it starts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/weight_memory.h"
#include "gguf/gguf_reader.h"
#include "model/deepseek4_config.h"
#include "model/deepseek4_weights.h"
#include "model/mtp_follower.h"
#include "runtime/backend.h"
#include "runtime/backend_registry.h"
#include "runtime/expert_placement.h"
#include "runtime/expert_stats.h"
#include "runtime/hybrid_moe.h"
#include "runtime/inference_session.h"
#include "runtime/session_options.h"

namespace moe {

class Deepseek4Model {
 public:
  static std::unique_ptr<Deepseek4Model> load(const std::string& path, bool map = true);
  static std::unique_ptr<Deepseek4Model> load(const std::string& path, WeightMemory memory);

  const GgufFile& file() const { return file_; }
  const Deepseek4Config& config() const { return config_; }
  const Deepseek4Weights& weights() const { return weights_; }
  // Every tensor's bytes and role, for the expert placement.
  std::vector<TensorFootprint> tensor_footprints() const;
  // The MTP module from an MTP companion GGUF (moe -md FILE), checked
  // against this model: the same shape and one layer more.
  void attach_mtp(const std::string& path);
  const Deepseek4MtpWeights* mtp() const { return mtp_weights_.get(); }
  // The companion's config: the module's layer is num_hidden_layers.
  const Deepseek4Config& mtp_config() const { return mtp_config_; }
  // Cache bytes one position of context adds (all layers and an attached
  // MTP module's, one sequence): the compressed rows and the indexer's keys.
  size_t cache_bytes_per_token(LatentType type = LatentType::kF32) const;
  // Cache bytes a sequence holds whatever its context: the rings of raw
  // rows (window + n_batch) and of the compressors' state.
  size_t cache_bytes_fixed(int64_t n_batch, LatentType type = LatentType::kF32) const;

 private:
  Deepseek4Model(GgufFile f) : file_(std::move(f)) {}
  GgufFile file_;
  Deepseek4Config config_;
  Deepseek4Weights weights_;
  std::unique_ptr<GgufFile> mtp_file_;
  Deepseek4Config mtp_config_;
  std::unique_ptr<Deepseek4MtpWeights> mtp_weights_;
};

class Deepseek4Session final : public InferenceSession, private MtpModule {
 public:
  // Backends as the flags ask (the compute backend must have the V4 ops);
  // the raw and compressed rows cached in o.cache_type (-ctk); o.mtp: draft
  // with the model's attached MTP module (--spec-type draft-mtp). With a
  // device, o.placement decides which routed experts it holds
  // (runtime/expert_placement.h); the rest stay in host memory and the host
  // CPU computes them (runtime/hybrid_moe.h), as for DeepSeek-V2/V3.
  Deepseek4Session(const Deepseek4Model& model, const SessionOptions& o);
  // The CPU alone with n_threads.
  Deepseek4Session(const Deepseek4Model& model, int64_t n_ctx, int64_t n_batch, int n_threads, int64_t n_seq = 1,
                   LatentType cache_type = LatentType::kF32, bool mtp = false);
  LatentType cache_type() const { return cache_type_; }
  ~Deepseek4Session() override;

  void forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) override;
  // Every row computed as it would be alone, so verified drafts give what
  // one-token steps give.
  void forward_verify(const int32_t* tokens, int64_t n, float* logits) override;
  int64_t n_past() const override { return seq_pos(0); }
  int64_t n_ctx() const override { return n_ctx_; }
  int64_t n_vocab() const override { return c_.vocab_size; }
  void reset() override;
  void truncate(int64_t n) override { seq_truncate(0, n); }
  // Compressed rows are built from blocks aligned to positions, so a shift
  // cannot move them; the kept tokens after the hole are evaluated again at
  // their new positions (the cache then equals a fresh evaluation).
  void seq_drop(int64_t s, int64_t p0, int64_t p1) override;

  int64_t n_seq() const override { return static_cast<int64_t>(seqs_.size()); }
  int64_t max_step_tokens() const override { return n_rows_; }
  int64_t seq_pos(int64_t s) const override { return static_cast<int64_t>(seqs_[static_cast<size_t>(s)].tokens.size()); }
  // Rows of positions < n, and blocks that end before n, are what a fresh
  // evaluation of those tokens gives: truncating only forgets.
  void seq_truncate(int64_t s, int64_t n) override;
  void seq_copy(int64_t src, int64_t dst, int64_t n) override;
  void forward_spans(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits) override;

  // Saved caches: a state of sequence 0 (deepseek4_saved_cache.cpp): the
  // blocks' rows up to n and the rings' last positions before it, with up
  // to kSavedHistory positions more so that a prompt a little shorter
  // than the saved one (the usual rerun) still finds its rows.
  static constexpr int64_t kSavedHistory = 32;
  PromptCacheShape saved_cache_shape() const override;
  void saved_cache_export(int64_t n, PromptCacheData& d) override;
  void saved_cache_import(const PromptCacheData& d, int64_t n) override;

  // ---- multi-token prediction (InferenceSession; deepseek4_mtp.cpp) ----
  bool has_mtp() const override { return mtp_ != nullptr; }
  void mtp_draft_many(std::vector<DraftAsk>& asks) override;

  const Deepseek4Model& model() const { return model_; }
  std::string backends_description() const { return backends_.describe(); }
  const ExpertPlacement& placement() const { return placement_; }
  // Bytes of weights the device holds (its copies), 0 without one.
  size_t device_weight_bytes() const { return backends_.device ? backends_.device->weight_bytes() : 0; }
  // How often each routed expert was chosen since the session started.
  ExpertStats expert_stats() const;

 private:
  // The rings keep n_rows_ positions more than a step needs, so going back
  // up to n_rows_ positions from the furthest ever written (rejected
  // drafts, a chat turn's re-rendered end) finds every row intact; going
  // further evaluates the kept tokens again.
  struct SeqState {
    std::vector<Dsv4LayerCache> layers;
    std::vector<int32_t> tokens;  // every cached position's token
    int64_t high = 0;             // 1 + the furthest position written since the cache was last empty
    // The rings hold nothing of positions before this (a loaded state holds
    // only its last ones): a truncation below it evaluates again.
    int64_t valid_from = 0;
  };
  // Positions h (<= kSavedHistory) before n for which the rings still hold
  // everything a continuation from n - h needs.
  int64_t ring_history(const SeqState& st, int64_t n) const;
  // A run of a step's rows: n tokens of sequence seq from position pos0,
  // from row r0 (the MTP module's batches are the same).
  using SpanAt = MtpSpan;
  void check_tokens(const int32_t* tokens, int64_t n) const;
  // Sequence s holds its tokens [0, n) again, evaluated from scratch.
  void reevaluate(int64_t s, std::vector<int32_t> tokens);
  void forward_step(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits, bool all_logits);
  // h_ = RMSNorm(HC_pre(x_)) * norm; post_ and comb_ kept for hc_post.
  void hc_pre(const HyperConnWeights& w, const TensorView& norm, int64_t n);
  HyperConnParams hc_params(const HyperConnWeights& w) const;
  // Layer il of config c (the trunk's, or the MTP companion's for its
  // layer) over the step's rows; its cache is sequence s's layers[il], or
  // its MTP layer's.
  void attention(const Dsv4LayerWeights& L, const Deepseek4Config& c, int64_t il, const std::vector<SpanAt>& at,
                 int64_t n);
  void moe(const Dsv4LayerWeights& L, const Deepseek4Config& c, int64_t il, const int32_t* tokens, int64_t n);
  Dsv4AttnParams attn_params(const Deepseek4Config& c, int64_t il) const;
  Dsv4LayerCache& layer_cache(int64_t s, int64_t il);
  // The allocation of one layer's cache.
  void place_weights(const PlacementOptions& options, int64_t n_seq, bool mtp);
  Dsv4LayerCache alloc_layer_cache(const Deepseek4Config& c, int64_t il);
  // y = x's rings whole and its blocks up to position n (a layer of compress ratio `ratio`).
  void copy_layer_cache(const Dsv4LayerCache& x, Dsv4LayerCache& y, int64_t ratio, int64_t n);

  // ---- the MTP module (deepseek4_mtp.cpp; the bookkeeping is mtp_follower.h's) ----
  void mtp_init();
  // MtpModule: a pair's hidden state is the trunk's hc streams; staged into
  // the second half of mtp_cat_'s rows (one per stream), the block over
  // them (its output streams in x_), the module's own HC head and norm.
  int64_t mtp_seq_pos(int64_t s) const override { return seq_pos(s); }
  void mtp_stage_hidden(const Act& h, int64_t row) override;
  void mtp_block(const int32_t* next_tokens, const std::vector<MtpSpan>& at, int64_t n) override;
  const float* mtp_head(const std::vector<int64_t>& x_rows) override;
  Act mtp_chain_row(int64_t i) const override { return mtp_chain_.rows_from(i, 1); }
  void mtp_set_batch_invariant(bool on) override { be_->set_batch_invariant(on); }

  const Deepseek4Model& model_;
  const Deepseek4Config& c_;
  BackendSet backends_;
  Backend* be_;
  ExpertPlacement placement_;
  Deepseek4Weights w_;  // the model's views, or the compute backend's copies of them
  std::vector<LayerExperts> experts_;  // per layer (and the MTP module's block after them)
  std::unique_ptr<HybridMoe> moe_;
  uint64_t n_evaluated_ = 0;  // tokens through the trunk (expert statistics)
  int64_t n_ctx_, n_batch_, n_rows_;
  LatentType cache_type_;
  std::vector<SeqState> seqs_;

  // Activations [n_rows][...] on the backend.
  Act x_;       // [hc * hidden] the streams
  Act xn_;      // [hc * hidden] RMSNorm'd streams (the mixes' input)
  Act mix_;     // [(2 + hc) * hc]
  Act post_, comb_;  // [hc], [hc * hc]
  Act h_;       // [hidden] a sub-layer's input
  Act out_;     // [hidden] its output
  Act qa_, q_, kv_, o_, oa_;
  Act sc_kv_, sc_score_;  // the compressor's projections [coff * head_dim]
  Act ik_kv_, ik_score_;  // the indexer compressor's [2 * index_dim]
  Act iq_, iw_;           // the indexer's queries and head weights
  Ids selected_;  // [index_topk]
  Act logit_e_;   // [n_experts]
  Ids route_ids_;  // [top_k]
  Act route_w_;    // [top_k]
  Act slot_out_;   // [n_rows * top_k][hidden]
  Act sh_g_, sh_u_;  // the shared experts' [n_shared * moe_ffn]

  // The MTP module's state.
  const Deepseek4MtpWeights* mtp_ = nullptr;
  const Deepseek4Config* mc_ = nullptr;  // the companion's config
  std::vector<Dsv4LayerCache> mtp_cache_;  // [sequence] the module's layer
  std::unique_ptr<MtpFollower> mtp_follow_;
  Act hid_;        // [n_rows][hc * hidden]: the last step's final streams
  Act pending_;    // [n_seq][hc * hidden]: a sequence's last position, waiting for its next token
  Act mtp_cat_;    // [n_rows * hc][2 * hidden]: [enorm(emb) | hnorm(h)] per stream
  Act mtp_chain_;  // [n_seq][hc * hidden]: the block's output a chained draft continues from
  std::vector<float> mtp_logits_;    // [n_seq][n_vocab]
  std::vector<int32_t> mtp_tokens_;  // a batch's next tokens, once per stream
};

}  // namespace moe
