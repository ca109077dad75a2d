// DeepSeek-V2/V3 forward pass over a backend. Each block follows the paper's
// equations; the comments name them (DeepSeek-V2 §2.1 MLA, §2.2 DeepSeekMoE;
// DeepSeek-V3 §2.1.2 auxiliary-loss-free balancing) and the symbols of
// DeepSeek's inference/model.py. The arithmetic is the backend's; this file
// holds no loops over data, no scratch and no threads.
#include "model/deepseek2.h"
#include "model/model_fingerprint.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/mapped_file.h"
#include "quant/interleaved.h"

namespace moe {

namespace {

// Frequencies of the rotated pairs, with YaRN's interpolation ramp between
// the original (high-frequency) and the factor-scaled (low-frequency) pairs.
// inference/model.py precompute_freqs_cis; ggml rope_yarn.
std::vector<float> rope_frequencies(const Deepseek2Config& c) {
  const int64_t d = c.qk_rope_head_dim;
  std::vector<float> f(static_cast<size_t>(d / 2));
  const float theta_scale = std::pow(c.rope_theta, -2.0f / static_cast<float>(d));
  float theta = 1.0f;
  for (auto& v : f) {
    v = theta;
    theta *= theta_scale;
  }
  if (c.rope_scaling == RopeScaling::kYarn) {
    auto corr_dim = [&](float n_rot) {
      return static_cast<float>(d) *
             std::log(static_cast<float>(c.original_max_position_embeddings) / (n_rot * 2.0f * static_cast<float>(M_PI))) /
             (2.0f * std::log(c.rope_theta));
    };
    const float low = std::max(0.0f, std::floor(corr_dim(c.beta_fast)));
    const float high = std::min(static_cast<float>(d - 1), std::ceil(corr_dim(c.beta_slow)));
    for (size_t i = 0; i < f.size(); ++i) {
      const float y = (static_cast<float>(i) - low) / std::max(0.001f, high - low);
      const float ramp = 1.0f - std::min(1.0f, std::max(0.0f, y));  // 1: keep, 0: interpolate
      f[i] = f[i] / c.rope_factor * (1.0f - ramp) + f[i] * ramp;
    }
  }
  return f;
}

size_t sz(int64_t n) { return static_cast<size_t>(n); }

}  // namespace

std::unique_ptr<Deepseek2Model> Deepseek2Model::load(const std::string& path, bool map, bool repack) {
  std::unique_ptr<Deepseek2Model> m(new Deepseek2Model(GgufFile::open(path, map)));
  m->config_ = Deepseek2Config::from_gguf(m->file_);
  m->weights_ = Deepseek2Weights::bind(m->file_, m->config_);
  m->rope_freqs_ = rope_frequencies(m->config_);
  m->fingerprint_ = model_fingerprint(m->file_, m->config_.vocab_size);
  if (repack && !map) {
    auto repack_experts = [&](TensorView& t, TensorRole role, int64_t) {
      if (role == TensorRole::kRoutedExperts) m->repacked_.repack(t, m->file_);
    };
    m->weights_.for_each_tensor(repack_experts);
    if (m->weights_.mtp) for_each_mtp_tensor(*m->weights_.mtp, m->config_.num_hidden_layers, repack_experts);
    // The rest of each layer's products too: a third of generation's bytes
    // (attention, shared experts), read 1.6x faster per byte interleaved.
    auto repack_matrix = [&](TensorView& t) { m->repacked_.repack(t, m->file_); };
    for (LayerWeights& L : m->weights_.layers) for_each_product_matrix(L, repack_matrix);
    if (m->weights_.mtp) for_each_product_matrix(m->weights_.mtp->block, repack_matrix);
  }
  return m;
}

std::unique_ptr<Deepseek2Model> Deepseek2Model::load(const std::string& path, WeightMemory memory, bool repack) {
  return load_with_weight_memory(memory, [&](bool map) { return load(path, map, repack); });
}

bool Deepseek2Model::weights_read() const {
  for (const MappedFile* m : file_.mappings())
    if (m->mapped()) return false;
  return true;
}

std::vector<TensorFootprint> Deepseek2Model::tensor_footprints() const {
  std::vector<TensorFootprint> out;
  weights_.for_each_tensor([&](const TensorView& t, TensorRole role, int64_t il) {
    // The file's bytes (a device copies those), not a host repack's.
    out.push_back({t.name, il, role, file_layout_bytes(t), role == TensorRole::kRoutedExperts ? t.ne[2] : 0});
  });
  return out;
}

uint64_t Deepseek2Model::fingerprint() const { return fingerprint_; }

size_t Deepseek2Model::kv_cache_bytes(int64_t n_ctx, LatentType type) const {  // one sequence
  // The latent rows, and DeepSeek-V3.2's index keys beside them, both in the type.
  const int64_t cols = LatentCache::storage_cols(type, config_.kv_lora_rank + config_.qk_rope_head_dim) +
                       (config_.has_indexer() ? LatentCache::storage_cols(type, config_.index_head_dim) : 0);
  return sz(config_.num_hidden_layers * n_ctx * cols) * sizeof(float);
}

Deepseek2Session::Deepseek2Session(const Deepseek2Model& model, int64_t n_ctx, int64_t n_batch, int n_threads)
    : Deepseek2Session(model, [&] {
        SessionOptions o;
        o.n_ctx = n_ctx;
        o.n_batch = n_batch;
        o.backends.n_threads = n_threads;
        return o;
      }()) {}

Deepseek2Session::~Deepseek2Session() = default;

Deepseek2Session::Deepseek2Session(const Deepseek2Model& model, const SessionOptions& o)
    : model_(model),
      c_(model.config()),
      backends_(make_backends(o.backends)),
      n_batch_(std::max<int64_t>(1, o.n_batch)),
      n_rows_(std::max<int64_t>(n_batch_, o.n_seq)),
      seq_pos_(sz(std::max<int64_t>(1, o.n_seq)), 0) {
  MOE_ASSERT(o.n_ctx > 0, "context size must be positive");
  const int64_t n_seq = std::max<int64_t>(1, o.n_seq);
  const int64_t L = c_.num_hidden_layers, E = c_.n_routed_experts;

  // Where the weights live.
  ExpertStats stats;
  PlacementInputs in;
  in.host_name = backends_.host->name();
  in.host_memory = model.weights_read() ? "memory read from the file" : "the file mapping";
  if (backends_.device) in.device_name = backends_.device->name();
  in.budget = backends_.device_budget;
  in.kv_bytes = model.kv_cache_bytes(o.n_ctx, o.cache_type) * sz(n_seq);
  in.options = o.placement;
  if (!o.placement.expert_stats_file.empty()) {
    stats = ExpertStats::read(o.placement.expert_stats_file);
    in.stats = &stats;
  }
  placement_ = plan_expert_placement(model.tensor_footprints(), L, in);
  if (!placement_.device_active) backends_.device.reset();  // the host computes everything
  be_ = &backends_.compute();
  Backend* host = backends_.device ? backends_.host.get() : nullptr;

  // The compute backend's weights: the model's own views when it is the
  // host; otherwise copies of everything every token uses (tied tensors
  // once) and of the routed experts placed on it.
  w_ = model.weights();
  const TensorView host_freqs = TensorView::contiguous(
      "rope_freqs", GgmlType::F32, {static_cast<int64_t>(model.rope_freqs().size()), 1, 1, 1},
      reinterpret_cast<const uint8_t*>(model.rope_freqs().data()));
  mla_.rope_freqs = host_freqs;
  if (o.mtp) {
    if (!model.weights().mtp) throw_error("--spec-type draft-mtp: %s", model.weights().mtp_missing.c_str());
    mtp_ = std::make_unique<MtpWeights>(*model.weights().mtp);
  }
  if (host) {
    std::map<const uint8_t*, TensorView> copies;
    auto copy = [&](const TensorView& t) {
      auto it = copies.find(t.data);
      if (it == copies.end()) it = copies.emplace(t.data, upload_tensor(*be_, t)).first;
      return it->second;
    };
    const auto copy_every_token = [&](TensorView& t, TensorRole role, int64_t) {
      if (role == TensorRole::kEveryToken) t = copy(t);
    };
    w_.for_each_tensor(copy_every_token);
    if (mtp_) for_each_mtp_tensor(*mtp_, L, copy_every_token);  // its routed experts stay on the host
    mla_.rope_freqs = copy(host_freqs);
  }
  // Layer L: the MTP module's experts, all on the host.
  const int64_t n_moe_layers = L + (mtp_ ? 1 : 0);
  experts_.resize(sz(n_moe_layers));
  route_params_.resize(sz(n_moe_layers));
  for (int64_t il = 0; il < n_moe_layers; ++il) {
    const LayerWeights& host_layer = il < L ? model.weights().layers[sz(il)] : model.weights().mtp->block;
    const auto* e = std::get_if<MoeWeights>(&host_layer.ffn);
    if (!e) continue;
    LayerExperts& X = experts_[sz(il)];
    X.host = {e->gate_exps, e->up_exps, e->down_exps};
    X.device_slot = il < L ? placement_.device_slot[sz(il)] : std::vector<int32_t>(sz(E), -1);
    const std::vector<int32_t> on_device = il < L ? placement_.device_experts(il) : std::vector<int32_t>();
    if (host && !on_device.empty())
      X.device = {upload_experts(*be_, e->gate_exps, on_device), upload_experts(*be_, e->up_exps, on_device),
                  upload_experts(*be_, e->down_exps, on_device)};
    const LayerWeights& layer = il < L ? w_.layers[sz(il)] : mtp_->block;
    MoeRouteParams& rp = route_params_[sz(il)];
    rp.n_experts = E;
    rp.top_k = c_.num_experts_per_tok;
    rp.n_group = c_.n_group;
    rp.topk_group = c_.topk_group;
    rp.scoring = c_.scoring_func;
    rp.bias = std::get<MoeWeights>(layer.ffn).score_bias;
    rp.norm_topk_prob = c_.norm_topk_prob;
    rp.routed_scaling_factor = c_.routed_scaling_factor;
  }

  mla_.n_heads = c_.num_attention_heads;
  mla_.kv_lora_rank = c_.kv_lora_rank;
  mla_.qk_rope_head_dim = c_.qk_rope_head_dim;
  mla_.qk_nope_head_dim = c_.qk_nope_head_dim;
  mla_.v_head_dim = c_.v_head_dim;
  mla_.rms_norm_eps = c_.rms_norm_eps;
  mla_.softmax_scale = c_.softmax_scale();
  mla_.rope_mscale = c_.rope_mscale();
  if (!be_->supports_latent_type(o.cache_type))
    throw_error("-ctk %s: %s cannot compute attention over a %s latent cache", latent_type_name(o.cache_type),
                be_->describe().c_str(), latent_type_name(o.cache_type));
  cache_.type = o.cache_type;
  cache_.n_layers = L;
  cache_.n_ctx = o.n_ctx;
  cache_.n_seq = n_seq;
  cache_.rows = be_->alloc(n_seq * L * o.n_ctx, LatentCache::storage_cols(o.cache_type, mla_.latent_dim()));

  const int64_t B = n_rows_, D = c_.hidden_size, H = c_.num_attention_heads;
  const int64_t ffn = std::max(c_.intermediate_size, c_.moe_intermediate_size * std::max<int64_t>(1, c_.n_shared_experts));
  const int64_t K = std::max<int64_t>(1, c_.num_experts_per_tok);
  x_ = be_->alloc(B, D);
  h_ = be_->alloc(B, D);
  out_ = be_->alloc(B, D);
  q_a_ = be_->alloc(B, std::max<int64_t>(1, c_.q_lora_rank));
  q_ = be_->alloc(B, H * c_.qk_head_dim());
  kv_a_ = be_->alloc(B, mla_.latent_dim());
  q_abs_ = be_->alloc(B, H * mla_.latent_dim());
  o_lat_ = be_->alloc(B, H * c_.kv_lora_rank);
  attn_v_ = be_->alloc(B, H * c_.v_head_dim);
  ffn_g_ = be_->alloc(B, ffn);
  ffn_u_ = be_->alloc(B, ffn);
  router_ = be_->alloc(B, std::max<int64_t>(1, E));
  route_ids_ = be_->alloc_ids(B, K);
  route_w_ = be_->alloc(B, K);
  slot_out_ = be_->alloc(B * K, D);
  ye_ = be_->alloc(B, D);
  moe_ = std::make_unique<HybridMoe>(*be_, host, n_moe_layers, std::max<int64_t>(1, E), K, D, B);
  if (c_.has_indexer()) {
    dsa_.n_heads = c_.index_n_heads;
    dsa_.head_dim = c_.index_head_dim;
    dsa_.top_k = c_.index_topk;
    dsa_.rope_dim = c_.qk_rope_head_dim;
    dsa_.rope_freqs = mla_.rope_freqs;
    dsa_.rope_mscale = mla_.rope_mscale;
    index_layers_ = L + (mtp_ ? 1 : 0);  // the module's block selects from keys of its own
    dsa_.key_type = cache_.type;
    index_keys_ = be_->alloc(n_seq * index_layers_ * o.n_ctx, LatentCache::storage_cols(cache_.type, c_.index_head_dim));
    index_q_ = be_->alloc(B, c_.index_n_heads * c_.index_head_dim);
    index_k_ = be_->alloc(B, c_.index_head_dim);
    index_w_ = be_->alloc(B, c_.index_n_heads);
    selected_ = be_->alloc_ids(B, c_.index_topk);
  }
  mtp_init(o);
}

ExpertStats Deepseek2Session::expert_stats() const {
  return moe_->stats(model_.file().get_string_opt("general.name").value_or(model_.file().path()), c_.num_hidden_layers,
                     c_.num_experts_per_tok, n_evaluated_);
}

void Deepseek2Session::check_tokens(const int32_t* tokens, int64_t n) const {
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c_.vocab_size)
      throw_error("token id %d at position %lld is outside the vocabulary (%lld tokens)", tokens[i],
                  static_cast<long long>(i), static_cast<long long>(c_.vocab_size));
}

void Deepseek2Session::forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  forward_seq0(tokens, n, logits, all_logits, false);
}

void Deepseek2Session::forward_verify(const int32_t* tokens, int64_t n, float* logits) {
  forward_seq0(tokens, n, logits, true, true);
}

void Deepseek2Session::forward_seq0(const int32_t* tokens, int64_t n, float* logits, bool all_logits, bool invariant) {
  check_tokens(tokens, n);
  set_batch_invariant(invariant);
  forward_in_steps(tokens, n, n_batch_, logits, all_logits, [&](const int32_t* t, const SeqSpan& span, float* out) {
    forward_batch(t, {span}, out, all_logits);
  });
  set_batch_invariant(false);
}

void Deepseek2Session::seq_copy(int64_t src, int64_t dst, int64_t n) {
  MOE_ASSERT(src >= 0 && src < cache_.n_seq && dst >= 0 && dst < cache_.n_seq && n >= 0 && n <= seq_pos(src),
             "seq_copy: %lld positions of sequence %lld (holding %lld) into %lld", static_cast<long long>(n),
             static_cast<long long>(src), static_cast<long long>(src >= 0 && src < cache_.n_seq ? seq_pos(src) : -1),
             static_cast<long long>(dst));
  if (src != dst)
    for (int64_t il = 0; il < c_.num_hidden_layers; ++il) {
      be_->copy_rows(cache_.sequence(src).layer(il), cache_.sequence(dst).layer(il), n);
      if (c_.has_indexer()) be_->copy_rows(index_keys(src, il), index_keys(dst, il), n);
    }
  seq_pos_[sz(dst)] = n;
  if (mtp_) mtp_seq_copy(src, dst, n);
}

void Deepseek2Session::reset() {
  std::fill(seq_pos_.begin(), seq_pos_.end(), 0);
  if (mtp_) mtp_reset(-1);
}

void Deepseek2Session::seq_truncate(int64_t s, int64_t n) {
  int64_t& p = seq_pos_[sz(s)];
  if (n >= 0 && n < p) p = n;
  if (mtp_ && n >= 0) mtp_truncate(s, n);
}

void Deepseek2Session::seq_drop(int64_t s, int64_t p0, int64_t p1) {
  const int64_t n_past = seq_pos(s);
  MOE_ASSERT(0 <= p0 && p0 <= p1 && p1 <= n_past, "seq_drop: positions [%lld, %lld) of %lld", static_cast<long long>(p0),
             static_cast<long long>(p1), static_cast<long long>(n_past));
  if (p0 == p1) return;
  LatentCache cache = cache_.sequence(s);
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il) {
    be_->mla_kv_shift(mla_, cache, il, p1, p0, n_past - p1);
    if (c_.has_indexer()) be_->dsa_keys_shift(dsa_, index_keys(s, il), p1, p0, n_past - p1);
  }
  seq_pos_[sz(s)] = n_past - (p1 - p0);
  if (mtp_) mtp_seq_drop(s, p0, p1);
}

// The cache's rows are dense (alloc), so a layer's positions [0, n) are
// one copy each way; with index keys (V3.2) each row is two copies.
void Deepseek2Session::cache_export(int64_t s, int64_t n, float* rows) const {
  MOE_ASSERT(n <= seq_pos(s), "cache_export: %lld of %lld positions", static_cast<long long>(n),
             static_cast<long long>(seq_pos(s)));
  const LatentCache c = cache_.sequence(s);
  const int64_t cols = c.rows.cols, W = cache_row_floats();
  MOE_ASSERT(c.rows.stride == cols, "cache rows are not dense");
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il) {
    if (!c_.has_indexer()) {
      be_->copy_to_host(rows + il * n * cols, c.layer(il).row(0), sz(n * cols) * sizeof(float));
      continue;
    }
    const Act keys = index_keys(s, il);
    for (int64_t t = 0; t < n; ++t) {
      float* row = rows + (il * n + t) * W;
      be_->copy_to_host(row, c.layer(il).row(t), sz(cols) * sizeof(float));
      be_->copy_to_host(row + cols, keys.row(t), sz(keys.cols) * sizeof(float));
    }
  }
}

PromptCacheShape Deepseek2Session::saved_cache_shape() const {
  PromptCacheShape p;
  p.model_id = model_.fingerprint();
  p.model_name = model_.file().get_string_opt("general.name").value_or(model_.file().path());
  p.latent_type = static_cast<uint32_t>(cache_type());
  p.n_layers = static_cast<uint32_t>(c_.num_hidden_layers);
  p.row_floats = static_cast<uint32_t>(cache_row_floats());
  p.n_ctx = n_ctx();
  p.n_vocab = n_vocab();
  return p;
}

void Deepseek2Session::saved_cache_export(int64_t n, PromptCacheData& d) {
  d.rows.resize(sz(c_.num_hidden_layers * n * cache_row_floats()));
  cache_export(0, n, d.rows.data());
}

void Deepseek2Session::saved_cache_import(const PromptCacheData& d, int64_t n) {
  truncate(0);
  if (n > 0) cache_import(0, n, d.rows.data(), static_cast<int64_t>(d.tokens.size()));
}

void Deepseek2Session::cache_import(int64_t s, int64_t n, const float* rows, int64_t rows_per_layer) {
  MOE_ASSERT(n <= cache_.n_ctx && n <= rows_per_layer, "cache_import: %lld positions (of %lld) in a context of %lld",
             static_cast<long long>(n), static_cast<long long>(rows_per_layer), static_cast<long long>(cache_.n_ctx));
  const LatentCache c = cache_.sequence(s);
  const int64_t cols = c.rows.cols, W = cache_row_floats();
  MOE_ASSERT(c.rows.stride == cols, "cache rows are not dense");
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il) {
    if (!c_.has_indexer()) {
      be_->copy_from_host(c.layer(il).row(0), rows + il * rows_per_layer * cols, sz(n * cols) * sizeof(float));
      continue;
    }
    const Act keys = index_keys(s, il);
    for (int64_t t = 0; t < n; ++t) {
      const float* row = rows + (il * rows_per_layer + t) * W;
      be_->copy_from_host(c.layer(il).row(t), row, sz(cols) * sizeof(float));
      be_->copy_from_host(keys.row(t), row + cols, sz(keys.cols) * sizeof(float));
    }
  }
  seq_pos_[sz(s)] = n;
  if (mtp_) mtp_reset(s);  // saved caches hold no MTP rows: the module starts over from here
}

void Deepseek2Session::forward_spans(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits) {
  const int64_t n = check_step_spans(spans);
  if (n == 0) return;
  check_tokens(tokens, n);
  // Several sequences, or one verifying its drafts: every product row as it
  // would be alone (a prompt chunk of one span is its own batch already).
  set_batch_invariant(spans.size() > 1 || (spans[0].all_logits && spans[0].n > 1));
  forward_batch(tokens, spans, logits, false);
}

void Deepseek2Session::set_batch_invariant(bool on) {
  be_->set_batch_invariant(on);
  if (backends_.device) backends_.host->set_batch_invariant(on);
}

void Deepseek2Session::forward_batch(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits,
                                     bool all_logits) {
  Backend& be = *be_;
  const Deepseek2Weights& w = w_;
  const float eps = c_.rms_norm_eps;
  int64_t n = 0;
  std::vector<SpanAt> at;
  for (const SeqSpan& sp : spans) {
    at.push_back({sp.seq, seq_pos_[sz(sp.seq)], sp.n});
    n += sp.n;
  }
  if (mtp_) {  // the module takes the last step's pairs before its hidden states are overwritten
    std::vector<std::pair<int32_t, int32_t>> next;
    int64_t first = 0;
    for (const SeqSpan& sp : spans) {
      next.push_back({sp.seq, tokens[first]});
      first += sp.n;
    }
    mtp_catch_up(next);
  }
  be.embed(w.token_embd, tokens, n, x_);                  // x = E[tokens]
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il) block(w.layers[sz(il)], il, cache_, il, at, n);
  for (const SeqSpan& sp : spans) seq_pos_[sz(sp.seq)] += sp.n;
  n_evaluated_ += static_cast<uint64_t>(n);
  if (mtp_) mtp_record_step(tokens, at, n);
  // logits = W_out RMSNorm(x), for every token, or the last token of each
  // span that wants them (normed into consecutive rows of h, so the output
  // head reads its weights once for all of them)
  if (all_logits) {
    be.rms_norm(x_, w.output_norm, eps, n, h_);
    be.output_head(w.output, h_, n, logits);
    return;
  }
  int64_t n_out = 0, end = 0;
  for (const SeqSpan& sp : spans) {
    end += sp.n;
    const int64_t rows = sp.all_logits ? sp.n : sp.logits ? 1 : 0;
    if (rows > 0) be.rms_norm(x_.rows_from(end - rows, rows), w.output_norm, eps, rows, h_.rows_from(n_out, rows));
    n_out += rows;
  }
  if (n_out > 0) be.output_head(w.output, h_, n_out, logits);
}

void Deepseek2Session::block(const LayerWeights& L, int64_t il, const LatentCache& cache, int64_t cl,
                             const std::vector<SpanAt>& at, int64_t n) {
  Backend& be = *be_;
  const float eps = c_.rms_norm_eps;
  be.rms_norm(x_, L.attn_norm, eps, n, h_);             // h = RMSNorm(x)
  mla_attention(il, L.mla, cache, cl, at, n);           // out = MLA(h), each token over its own sequence
  be.add(x_, out_, n);                                  // x += out
  be.rms_norm(x_, L.ffn_norm, eps, n, h_);              // h = RMSNorm(x)
  if (const auto* dense = std::get_if<FfnWeights>(&L.ffn)) ffn(*dense, h_, n, out_);  // out = FFN(h)
  else moe_ffn(il, std::get<MoeWeights>(L.ffn), n);     // out = shared + routed experts (h)
  be.add(x_, out_, n);                                  // x += out
}

// Multi-head Latent Attention (DeepSeek-V2 §2.1), absorbed form: queries are
// moved into the latent space through W_UK (attn_k_b) so scores are taken
// directly against the cached c_kv, and the attention output is lifted out
// of the latent space through W_UV (attn_v_b) afterwards.
void Deepseek2Session::mla_attention(int64_t il, const MlaWeights& m, const LatentCache& caches, int64_t cl,
                                     const std::vector<SpanAt>& at, int64_t n) {
  Backend& be = *be_;
  // q = W_UQ RMSNorm(W_DQ h)  or  q = W_Q h                        (eq. 12-13)
  if (const auto* lora = std::get_if<QProjLora>(&m.q_proj)) {
    be.matmul(lora->wq_a, h_, n, q_a_);
    be.rms_norm(q_a_, lora->q_a_norm, c_.rms_norm_eps, n, q_a_);
    be.matmul(lora->wq_b, q_a_, n, q_);
  } else {
    be.matmul(std::get<QProjPlain>(m.q_proj).wq, h_, n, q_);
  }
  // [c_kv | k_rope] = W_DKV h; cache = [RMSNorm(c_kv) | RoPE(k_rope)]  (eq. 9, 14)
  be.matmul(m.wkv_a, h_, n, kv_a_);
  // DeepSeek-V3.2: a token that sees at most top_k positions has them all
  // chosen, which is dense attention: the dense forms below compute it (the
  // decompressed one for prompts, where it pays). Beyond, the indexer chooses.
  if (m.indexer && dsa_keys_and_need_choice(il, *m.indexer, at, n))
    return mla_attention_sparse(il, m, caches, cl, at, n);
  // A prompt alone in its step may take the decompressed form (keys and
  // values rebuilt per head, eq. 10-11, 15-17), where that costs less.
  if (at.size() == 1 && be.mla_decompressed_pays(mla_, at[0].pos0, n)) {
    LatentCache cache = caches.sequence(at[0].seq);
    const int64_t pos0 = at[0].pos0;
    be.mla_kv_append(mla_, kv_a_, m.kv_a_norm, cache, cl, pos0, n);
    be.mla_attention_decompressed(mla_, q_, m.wk_b, m.wv_b, cache, cl, pos0, n, attn_v_);
    be.matmul(m.wo, attn_v_, n, out_);
    return;
  }
  // Per sequence, over its own slot of the cache and from its own position:
  //   cache = [RMSNorm(c_kv) | RoPE(k_rope)]
  //   q_abs = [W_UK^T q_nope | RoPE(q_rope)] per head; o = softmax(q_abs . cache) c_kv
  int64_t first = 0;
  for (const SpanAt& sp : at) {
    LatentCache cache = caches.sequence(sp.seq);
    const int64_t pos0 = sp.pos0;
    be.mla_kv_append(mla_, kv_a_.rows_from(first, sp.n), m.kv_a_norm, cache, cl, pos0, sp.n);
    be.mla_query_absorb(mla_, q_.rows_from(first, sp.n), m.wk_b, pos0, sp.n, q_abs_.rows_from(first, sp.n));
    be.mla_attention(mla_, q_abs_.rows_from(first, sp.n), cache, cl, pos0, sp.n, o_lat_.rows_from(first, sp.n));
    first += sp.n;
  }
  // v = W_UV o_latent per head; out = W_O [v_1 .. v_H]               (eq. 18-19)
  be.mla_output_lift(mla_, o_lat_, m.wv_b, n, attn_v_);
  be.matmul(m.wo, attn_v_, n, out_);
}

// DeepSeek-V3.2: each token's index key (from the block's input) joins its
// sequence's keys, whatever attention the token then takes.
bool Deepseek2Session::dsa_keys_and_need_choice(int64_t il, const IndexerWeights& ix, const std::vector<SpanAt>& at,
                                                int64_t n) {
  be_->matmul(ix.wk, h_, n, index_k_);  // one index key per token
  bool choose = false;
  int64_t first = 0;
  for (const SpanAt& sp : at) {
    be_->dsa_keys_append(dsa_, index_k_.rows_from(first, sp.n), ix.k_norm, ix.k_norm_b, index_keys(sp.seq, il), sp.pos0,
                         sp.n);
    choose = choose || sp.pos0 + sp.n > dsa_.top_k;
    first += sp.n;
  }
  return choose;
}

// DeepSeek Sparse Attention (DeepSeek-V3.2): the lightning indexer scores
// every cached position for each query from the q-LoRA latent and the
// block's input, and MLA (absorbed) attends to the top_k of them only.
// q, q_a (normed), kv_a and the index keys are computed already.
void Deepseek2Session::mla_attention_sparse(int64_t il, const MlaWeights& m, const LatentCache& caches, int64_t cl,
                                            const std::vector<SpanAt>& at, int64_t n) {
  Backend& be = *be_;
  const IndexerWeights& ix = *m.indexer;
  be.matmul(ix.wq_b, q_a_, n, index_q_);  // index queries from c_q
  be.matmul(ix.proj, h_, n, index_w_);    // per-head weights
  int64_t first = 0;
  for (const SpanAt& sp : at) {
    LatentCache cache = caches.sequence(sp.seq);
    const int64_t pos0 = sp.pos0;
    const Ids sel = selected_.rows_from(first, sp.n);
    be.dsa_select(dsa_, index_q_.rows_from(first, sp.n), index_w_.rows_from(first, sp.n), index_keys(sp.seq, il), pos0,
                  sp.n, sel);
    be.mla_kv_append(mla_, kv_a_.rows_from(first, sp.n), m.kv_a_norm, cache, cl, pos0, sp.n);
    be.mla_query_absorb(mla_, q_.rows_from(first, sp.n), m.wk_b, pos0, sp.n, q_abs_.rows_from(first, sp.n));
    be.mla_attention_sparse(mla_, q_abs_.rows_from(first, sp.n), cache, cl, pos0, sp.n, sel, o_lat_.rows_from(first, sp.n));
    first += sp.n;
  }
  be.mla_output_lift(mla_, o_lat_, m.wv_b, n, attn_v_);
  be.matmul(m.wo, attn_v_, n, out_);
}

// FFN(x) = W_down(silu(W_gate x) * W_up x)
void Deepseek2Session::ffn(const FfnWeights& f, const Act& x, int64_t n, Act out) {
  Backend& be = *be_;
  const int64_t F = f.gate.ne[1];
  const Act g = ffn_g_.reshaped(F), u = ffn_u_.reshaped(F);
  be.matmul(f.gate, x, n, g);
  be.matmul(f.up, x, n, u);
  be.swiglu(g, u, n);
  be.matmul(f.down, g, n, out);
}

// DeepSeekMoE (DeepSeek-V2 §2.2): shared experts for every token plus the
// top-k routed experts weighted by the router (DeepSeek-V3 §2.1.2: the
// selection bias chooses, the unbiased scores weigh).
void Deepseek2Session::moe_ffn(int64_t il, const MoeWeights& e, int64_t n) {
  Backend& be = *be_;
  const int64_t K = c_.num_experts_per_tok;
  be.matmul(e.router, h_, n, router_);                              // s = W_gate h
  be.moe_route(route_params_[sz(il)], router_, n, route_ids_, route_w_);  // top-k ids, g
  moe_->begin(il, experts_[sz(il)], h_, route_ids_, n, slot_out_);  // FFN_i(h) per (token, slot)
  if (e.shared) ffn(*e.shared, h_, n, ye_);                         // shared experts, meanwhile
  moe_->finish(slot_out_);
  be.moe_combine(slot_out_, route_w_, K, n, out_);                  // out = sum_k g_k FFN_k(h)
  if (e.shared) be.add(out_, ye_, n);                               // + shared
}

}  // namespace moe
