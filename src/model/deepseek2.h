// The DeepSeek-V2/V3 model (GGUF architecture "deepseek2"): loading, and the
// forward pass over a batch of tokens through the MLA latent cache, written
// against the backend seam (runtime/backend.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/weight_memory.h"
#include "gguf/gguf_reader.h"
#include "model/deepseek2_config.h"
#include "model/deepseek2_weights.h"
#include "model/mtp_follower.h"
#include "runtime/backend_registry.h"
#include "runtime/expert_placement.h"
#include "runtime/expert_stats.h"
#include "runtime/hybrid_moe.h"
#include "model/repacked_tensors.h"
#include "runtime/inference_session.h"
#include "runtime/session_options.h"

namespace moe {

class Deepseek2Model {
 public:
  // Maps the file (reads it into memory with map = false), reads the
  // hyper-parameters, binds and checks every tensor. repack: the routed
  // experts of a file read into memory are repacked for the CPU's kernels
  // (model/repacked_tensors.h; the caller asks when the host CPU has them).
  static std::unique_ptr<Deepseek2Model> load(const std::string& path, bool map = true, bool repack = false);
  // WeightMemory::kAuto reads the weights into memory when twice the file
  // fits in the available memory, else maps them (core/weight_memory.h).
  static std::unique_ptr<Deepseek2Model> load(const std::string& path, WeightMemory memory, bool repack = false);
  // The weights were read into memory rather than mapped.
  bool weights_read() const;

  const GgufFile& file() const { return file_; }
  const Deepseek2Config& config() const { return config_; }
  const Deepseek2Weights& weights() const { return weights_; }
  const RepackedTensors& repacked() const { return repacked_; }
  // RoPE frequency of each rotated pair (YaRN-corrected when the file says so).
  const std::vector<float>& rope_freqs() const { return rope_freqs_; }
  // The weights as the placement planner sees them.
  std::vector<TensorFootprint> tensor_footprints() const;
  // Names these weights for saved caches: a hash of every tensor's name,
  // type, shape and first bytes (another quantization or another
  // checkpoint of the same shape differ), and the vocabulary size.
  uint64_t fingerprint() const;
  // The bytes of a latent cache of n_ctx positions.
  size_t kv_cache_bytes(int64_t n_ctx, LatentType type = LatentType::kF32) const;

 private:
  Deepseek2Model(GgufFile f) : file_(std::move(f)) {}
  GgufFile file_;
  Deepseek2Config config_;
  Deepseek2Weights weights_;
  std::vector<float> rope_freqs_;
  uint64_t fingerprint_ = 0;  // of the file's bytes, taken before any repack
  RepackedTensors repacked_;
};

// Sequences on the backends of a run: the placement of the weights, the
// device's copies of them, the latent cache and every activation buffer, all
// made up front; forward() allocates nothing. The InferenceSession interface
// is sequence 0; forward_spans() steps many sequences at once.
class Deepseek2Session final : public InferenceSession, private MtpModule {
 public:
  Deepseek2Session(const Deepseek2Model& model, const SessionOptions& o);
  // The CPU alone with n_threads.
  Deepseek2Session(const Deepseek2Model& model, int64_t n_ctx, int64_t n_batch, int n_threads);
  ~Deepseek2Session() override;

  // Sequence 0; n may exceed n_batch (split into steps).
  void forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) override;
  void forward_verify(const int32_t* tokens, int64_t n, float* logits) override;
  int64_t n_past() const override { return seq_pos_[0]; }
  int64_t n_ctx() const override { return cache_.n_ctx; }
  int64_t n_vocab() const override { return c_.vocab_size; }
  void reset() override;
  void truncate(int64_t n) override { seq_truncate(0, n); }

  // ---- many sequences (InferenceSession) ---------------------------------------
  int64_t n_seq() const override { return cache_.n_seq; }
  // n_batch, or one token of every sequence where there are more.
  int64_t max_step_tokens() const override { return n_rows_; }
  int64_t seq_pos(int64_t s) const override { return seq_pos_[static_cast<size_t>(s)]; }
  void seq_truncate(int64_t s, int64_t n) override;
  void seq_copy(int64_t src, int64_t dst, int64_t n) override;
  void seq_drop(int64_t s, int64_t p0, int64_t p1) override;
  void forward_spans(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits) override;

  // ---- multi-token prediction (InferenceSession; deepseek2_mtp.cpp) --------------
  bool has_mtp() const override { return mtp_ != nullptr; }
  void mtp_draft_many(std::vector<DraftAsk>& asks) override;

  // The latent cache of sequence s, positions [0, n), to and from host
  // memory (saved prompt caches): export writes [layer][n][cache_row_floats()];
  // import reads the first n rows of each layer of [layer][rows_per_layer][..]
  // and leaves the sequence holding n positions.
  // A row: the latent cache's, then DeepSeek-V3.2's index key (both as stored, in the cache's type).
  int64_t cache_row_floats() const { return cache_.rows.cols + (c_.has_indexer() ? index_keys_.cols : 0); }
  LatentType cache_type() const { return cache_.type; }
  void cache_export(int64_t s, int64_t n, float* rows) const;
  PromptCacheShape saved_cache_shape() const override;
  void saved_cache_export(int64_t n, PromptCacheData& d) override;
  void saved_cache_import(const PromptCacheData& d, int64_t n) override;
  void cache_import(int64_t s, int64_t n, const float* rows, int64_t rows_per_layer);

  const Deepseek2Model& model() const { return model_; }
  const ExpertPlacement& placement() const { return placement_; }
  // "CPU (AVX512-VNNI, 2 threads)" or "CPU-device (...) + CPU (...)".
  std::string backends_description() const { return backends_.describe(); }
  // How often each routed expert was chosen since the session began:
  // [layer][expert] (dense layers stay zero).
  const std::vector<uint64_t>& expert_counts() const { return moe_->counts(); }
  // The same with what a stats file needs (--record-expert-stats).
  ExpertStats expert_stats() const;

 private:
  void check_tokens(const int32_t* tokens, int64_t n) const;
  // Backend::set_batch_invariant on every backend of the session; each
  // entry point says it, so no step inherits the last one's.
  void set_batch_invariant(bool on);
  // all_logits: every token's logits (one span only).
  void forward_batch(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits, bool all_logits);
  void forward_seq0(const int32_t* tokens, int64_t n, float* logits, bool all_logits, bool invariant);
  // Where a step's tokens go: n tokens of sequence seq from position pos0.
  struct SpanAt {
    int32_t seq;
    int64_t pos0, n;
  };
  // One decoder block over x_ (n rows): attention over layer cl of `cache`
  // (the trunk's, or the MTP module's), experts of layer il.
  void block(const LayerWeights& L, int64_t il, const LatentCache& cache, int64_t cl, const std::vector<SpanAt>& at,
             int64_t n);
  void mla_attention(int64_t il, const MlaWeights& m, const LatentCache& cache, int64_t cl,
                     const std::vector<SpanAt>& at, int64_t n);
  // DeepSeek-V3.2: appends every token's index key; true when some token
  // sees more positions than top_k (then the indexer must choose).
  bool dsa_keys_and_need_choice(int64_t il, const IndexerWeights& ix, const std::vector<SpanAt>& at, int64_t n);
  void mla_attention_sparse(int64_t il, const MlaWeights& m, const LatentCache& cache, int64_t cl,
                            const std::vector<SpanAt>& at, int64_t n);
  // ---- the MTP module (deepseek2_mtp.cpp; the bookkeeping is mtp_follower.h's) ----
  void mtp_init(const SessionOptions& o);
  // Before a trunk step: the module takes the last step's pairs.
  void mtp_catch_up(const std::vector<std::pair<int32_t, int32_t>>& seq_first_next) {
    mtp_follow_->catch_up(seq_first_next);
  }
  // After a trunk step: the final hidden states of its rows, and where they are.
  void mtp_record_step(const int32_t* tokens, const std::vector<SpanAt>& at, int64_t n);
  // Sequence operations on the module's state (the trunk's are done).
  void mtp_truncate(int64_t s, int64_t n) { mtp_follow_->truncate(s, n); }
  void mtp_seq_copy(int64_t src, int64_t dst, int64_t n);
  void mtp_seq_drop(int64_t s, int64_t p0, int64_t p1);
  void mtp_reset(int64_t s) { mtp_follow_->reset(s); }  // s < 0: every sequence
  // MtpModule: pairs staged into the second half of mtp_cat_, the block
  // over them (its output in x_), the shared head.
  int64_t mtp_seq_pos(int64_t s) const override { return seq_pos_[static_cast<size_t>(s)]; }
  void mtp_stage_hidden(const Act& h, int64_t row) override;
  void mtp_block(const int32_t* next_tokens, const std::vector<MtpSpan>& at, int64_t n) override;
  const float* mtp_head(const std::vector<int64_t>& x_rows) override;
  Act mtp_chain_row(int64_t i) const override { return mtp_chain_.rows_from(i, 1); }
  void mtp_set_batch_invariant(bool on) override { set_batch_invariant(on); }
  void ffn(const FfnWeights& f, const Act& x, int64_t n, Act out);
  void moe_ffn(int64_t il, const MoeWeights& e, int64_t n);

  const Deepseek2Model& model_;
  const Deepseek2Config& c_;
  BackendSet backends_;
  Backend* be_;                    // the compute backend
  ExpertPlacement placement_;
  Deepseek2Weights w_;             // as the compute backend holds them
  std::vector<LayerExperts> experts_;        // [layer], routed experts on each side
  std::vector<MoeRouteParams> route_params_;  // [layer]
  MlaParams mla_;
  LatentCache cache_;
  DsaParams dsa_;                  // deepseek32's indexer (n_heads 0: none)
  // [sequence][layer][n_ctx][index_dim] in the cache's type: the indexer's
  // keys; with the MTP module one layer more per sequence (il =
  // num_hidden_layers), its own.
  Act index_keys_;
  int64_t index_layers_ = 0;
  Act index_keys(int64_t seq, int64_t il) const {
    return index_keys_.rows_from((seq * index_layers_ + il) * cache_.n_ctx, cache_.n_ctx);
  }
  std::unique_ptr<HybridMoe> moe_;
  // The MTP module (null when not asked for): its weights as the compute
  // backend holds them, its cache (one layer per sequence), how far it has
  // followed each sequence, and the trunk's last step: its final hidden
  // states (RMSNorm'd, as the module takes them), tokens and spans.
  std::unique_ptr<MtpWeights> mtp_;
  LatentCache mtp_cache_;
  std::unique_ptr<MtpFollower> mtp_follow_;
  Act hid_;                            // [n_rows][hidden]: the last step's final hidden states (RMSNorm'd)
  Act pending_;                        // [sequence][hidden]: a last hidden state kept across steps
  Act mtp_cat_;                        // [n_rows][2 * hidden]: [enorm(emb) | hnorm(h)]
  Act mtp_chain_;                      // [n_seq][hidden]: the block's output a chained draft continues from
  std::vector<float> mtp_logits_;      // [n_seq][n_vocab]
  int64_t n_batch_;
  int64_t n_rows_;                 // activation rows: max_step_tokens()
  std::vector<int64_t> seq_pos_;   // [sequence] cached positions
  uint64_t n_evaluated_ = 0;       // tokens through the layers since the start

  // Activations on the compute backend, [n_rows][...] each.
  Act x_;        // residual stream [hidden]
  Act h_;        // normed input of a block [hidden]
  Act out_;      // block output [hidden]
  Act q_a_;      // [q_lora_rank]
  Act q_;        // [heads * qk_head_dim]
  Act kv_a_;     // [kv_lora_rank + qk_rope_head_dim]
  Act q_abs_;    // [heads * (kv_lora_rank + qk_rope_head_dim)]: absorbed q | rotated q_rope
  Act o_lat_;    // [heads * kv_lora_rank]
  Act attn_v_;   // [heads * v_head_dim]
  Act ffn_g_, ffn_u_;  // [largest ffn]
  Act router_;   // [n_experts] logits
  Ids route_ids_;  // [top_k]
  Act index_q_;    // [index_heads * index_dim]: the indexer's queries
  Act index_k_;    // [index_dim]: its key before the norm
  Act index_w_;    // [index_heads]: its head weights
  Ids selected_;   // [index_topk]: the positions each token attends to
  Act route_w_;  // [top_k]
  Act slot_out_;   // [n_batch * top_k][hidden] routed expert outputs
  Act ye_;       // shared experts' output [hidden]
};

}  // namespace moe
