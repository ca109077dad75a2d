#include "model/deepseek4.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/error.h"
#include "core/mapped_file.h"
#include "runtime/moe_dispatch.h"

namespace moe {

namespace {

size_t sz(int64_t n) { return static_cast<size_t>(n); }

// A compressor's state ring: a block and the one before it (CSA's overlap)
// plus a step's tokens, whole blocks so a block's rows are contiguous.
int64_t state_ring_rows(int64_t ratio, int64_t step) { return (2 * ratio + step + ratio - 1) / ratio * ratio; }

}  // namespace

std::unique_ptr<Deepseek4Model> Deepseek4Model::load(const std::string& path, bool map) {
  std::unique_ptr<Deepseek4Model> m(new Deepseek4Model(GgufFile::open(path, map)));
  m->config_ = Deepseek4Config::from_gguf(m->file_);
  m->weights_ = Deepseek4Weights::bind(m->file_, m->config_);
  return m;
}

std::unique_ptr<Deepseek4Model> Deepseek4Model::load(const std::string& path, WeightMemory memory) {
  return load_with_weight_memory(memory, [&](bool map) { return load(path, map); });
}

void Deepseek4Model::attach_mtp(const std::string& path) {
  auto f = std::make_unique<GgufFile>(GgufFile::open(path, true));
  Deepseek4Config mc = Deepseek4Config::from_gguf(*f);
  if (mc.num_nextn_predict_layers != 1)
    throw_error("%s is not an MTP companion: deepseek4.nextn_predict_layers is %lld, a companion holds 1 module",
                path.c_str(), static_cast<long long>(mc.num_nextn_predict_layers));
  const Deepseek4Config& c = config_;
  auto same = [&](const char* what, int64_t theirs, int64_t ours) {
    if (theirs != ours)
      throw_error("%s was made for another model: its %s is %lld, %s's %lld", path.c_str(), what,
                  static_cast<long long>(theirs), file_.path().c_str(), static_cast<long long>(ours));
  };
  same("layer count before the module", mc.num_hidden_layers, c.num_hidden_layers);
  same("vocabulary", mc.vocab_size, c.vocab_size);
  same("hidden size", mc.hidden_size, c.hidden_size);
  same("hyper-connection count", mc.hc, c.hc);
  same("Sinkhorn iterations", mc.sinkhorn_iters, c.sinkhorn_iters);
  same("attention head count", mc.num_attention_heads, c.num_attention_heads);
  same("head size", mc.head_dim, c.head_dim);
  same("rotary size", mc.rope_dim, c.rope_dim);
  same("q_lora_rank", mc.q_lora_rank, c.q_lora_rank);
  same("output groups", mc.o_groups, c.o_groups);
  same("output_lora_rank", mc.o_lora_rank, c.o_lora_rank);
  same("sliding window", mc.sliding_window, c.sliding_window);
  same("indexer head count", mc.index_n_heads, c.index_n_heads);
  same("indexer key size", mc.index_head_dim, c.index_head_dim);
  same("expert count", mc.n_routed_experts, c.n_routed_experts);
  same("experts per token", mc.num_experts_per_tok, c.num_experts_per_tok);
  same("expert size", mc.moe_intermediate_size, c.moe_intermediate_size);
  same("shared expert count", mc.n_shared_experts, c.n_shared_experts);
  auto weights = std::make_unique<Deepseek4MtpWeights>(Deepseek4MtpWeights::bind(*f, mc));
  mtp_file_ = std::move(f);
  mtp_config_ = std::move(mc);
  mtp_weights_ = std::move(weights);
}

// Every cached layer: the trunk's, then an attached MTP module's.
template <typename F>
void for_each_cached_layer(const Deepseek4Config& c, const Deepseek4MtpWeights* mtp, const Deepseek4Config& mc, F&& f) {
  for (int64_t il = 0; il < c.num_hidden_layers; ++il) f(c, il);
  if (mtp) f(mc, mc.num_hidden_layers);
}

size_t Deepseek4Model::cache_bytes_per_token(LatentType type) const {
  double floats = 0;
  for_each_cached_layer(config_, mtp(), mtp_config_, [&](const Deepseek4Config& c, int64_t il) {
    const double row = static_cast<double>(LatentCache::storage_cols(type, c.head_dim));  // floats of a stored row
    const int64_t r = c.compress_ratio(il);
    if (r != 0) floats += row / static_cast<double>(r);
    if (c.attention_kind(il) == Dsv4Attention::kCsa)
      floats += static_cast<double>(LatentCache::storage_cols(type, c.index_head_dim)) / 4.0;
  });
  return static_cast<size_t>(floats * sizeof(float) + 0.5);
}

size_t Deepseek4Model::cache_bytes_fixed(int64_t n_batch, LatentType type) const {
  size_t floats = 0;
  for_each_cached_layer(config_, mtp(), mtp_config_, [&](const Deepseek4Config& c, int64_t il) {
    const int64_t row = LatentCache::storage_cols(type, c.head_dim);
    const int64_t r = c.compress_ratio(il);
    floats += sz((c.sliding_window + n_batch) * row);
    if (r != 0) floats += sz(2 * state_ring_rows(r, n_batch) * Deepseek4Config::compressor_overlap(r) * c.head_dim + row);
    if (c.attention_kind(il) == Dsv4Attention::kCsa)
      floats += sz(2 * state_ring_rows(4, n_batch) * Deepseek4Config::compressor_overlap(4) * c.index_head_dim +
                   LatentCache::storage_cols(type, c.index_head_dim));
  });
  return floats * sizeof(float);
}

std::vector<TensorFootprint> Deepseek4Model::tensor_footprints() const {
  std::vector<TensorFootprint> out;
  weights_.for_each_tensor([&](const TensorView& t, TensorRole role, int64_t il) {
    out.push_back({t.name, il, role, t.nbytes(), role == TensorRole::kRoutedExperts ? t.ne[2] : 0});
  });
  return out;
}

namespace {

SessionOptions cpu_only(int64_t n_ctx, int64_t n_batch, int n_threads, int64_t n_seq, LatentType cache_type,
                        bool mtp) {
  SessionOptions o;
  o.n_ctx = n_ctx;
  o.n_batch = n_batch;
  o.n_seq = n_seq;
  o.cache_type = cache_type;
  o.mtp = mtp;
  o.backends.n_threads = n_threads;
  return o;
}

}  // namespace

Deepseek4Session::Deepseek4Session(const Deepseek4Model& model, int64_t n_ctx, int64_t n_batch, int n_threads,
                                   int64_t n_seq, LatentType cache_type, bool mtp)
    : Deepseek4Session(model, cpu_only(n_ctx, n_batch, n_threads, n_seq, cache_type, mtp)) {}

Deepseek4Session::Deepseek4Session(const Deepseek4Model& model, const SessionOptions& o)
    : model_(model), c_(model.config()), w_(model.weights()), n_ctx_(o.n_ctx), n_batch_(o.n_batch),
      cache_type_(o.cache_type) {
  const int64_t n_ctx = o.n_ctx, n_batch = o.n_batch, n_seq = o.n_seq;
  const bool mtp = o.mtp;
  if (n_ctx <= 0 || n_batch <= 0 || n_seq <= 0) throw_error("deepseek4 session: n_ctx, n_batch and n_seq must be positive");
  if (mtp && !model.mtp())
    throw_error("--spec-type draft-mtp: %s has no MTP module attached (deepseek4 keeps it in a companion GGUF: -md FILE)",
                model.file().path().c_str());
  backends_ = make_backends(o.backends);
  n_rows_ = std::max(n_batch, n_seq);
  place_weights(o.placement, n_seq, mtp);
  const int64_t D = c_.hidden_size, hc = c_.hc, H = c_.num_attention_heads, d = c_.head_dim, n = n_rows_;
  const int64_t K = c_.num_experts_per_tok, S = c_.moe_intermediate_size * std::max<int64_t>(1, c_.n_shared_experts);
  x_ = be_->alloc(n, hc * D);
  xn_ = be_->alloc(n, hc * D);
  mix_ = be_->alloc(n, c_.hc_mix_dim());
  post_ = be_->alloc(n, hc);
  comb_ = be_->alloc(n, hc * hc);
  h_ = be_->alloc(n, D);
  out_ = be_->alloc(n, D);
  qa_ = be_->alloc(n, c_.q_lora_rank);
  q_ = be_->alloc(n, H * d);
  kv_ = be_->alloc(n, d);
  const int64_t widest = Deepseek4Config::compressor_overlap(4);  // CSA's compressors
  sc_kv_ = be_->alloc(n, widest * d);
  sc_score_ = be_->alloc(n, widest * d);
  ik_kv_ = be_->alloc(n, std::max<int64_t>(1, widest * c_.index_head_dim));
  ik_score_ = be_->alloc(n, std::max<int64_t>(1, widest * c_.index_head_dim));
  iq_ = be_->alloc(n, std::max<int64_t>(1, c_.index_n_heads * c_.index_head_dim));
  iw_ = be_->alloc(n, std::max<int64_t>(1, c_.index_n_heads));
  selected_ = be_->alloc_ids(n, std::max<int64_t>(1, c_.index_topk));
  o_ = be_->alloc(n, H * d);
  oa_ = be_->alloc(n, c_.o_groups * c_.o_lora_rank);
  logit_e_ = be_->alloc(n, c_.n_routed_experts);
  route_ids_ = be_->alloc_ids(n, K);
  route_w_ = be_->alloc(n, K);
  slot_out_ = be_->alloc(n * K, D);
  sh_g_ = be_->alloc(n, S);
  sh_u_ = be_->alloc(n, S);
  moe_ = std::make_unique<HybridMoe>(*be_, backends_.device ? backends_.host.get() : nullptr,
                                     static_cast<int64_t>(experts_.size()), c_.n_routed_experts, K, D, n);

  seqs_.resize(sz(n_seq));
  for (SeqState& st : seqs_) {
    st.tokens.reserve(sz(n_ctx));
    for (int64_t il = 0; il < c_.num_hidden_layers; ++il) st.layers.push_back(alloc_layer_cache(c_, il));
  }
  if (mtp) mtp_init();
}

// Where the weights live: with a device, the placement's routed experts
// and everything every token uses are copied to it (the model's views
// replaced by the copies); the other experts stay where the model has them
// and the host computes them. Without one, the host reads the model's views.
void Deepseek4Session::place_weights(const PlacementOptions& options, int64_t n_seq, bool mtp) {
  const int64_t L = c_.num_hidden_layers, E = c_.n_routed_experts;
  PlacementInputs in;
  in.host_name = backends_.host->name();
  in.host_memory = model_.file().mappings().front()->mapped() ? "the file mapping" : "memory read from the file";
  if (backends_.device) in.device_name = backends_.device->name();
  in.budget = backends_.device_budget;
  in.kv_bytes = (model_.cache_bytes_per_token(cache_type_) * sz(n_ctx_) + model_.cache_bytes_fixed(n_batch_, cache_type_)) *
                sz(n_seq);
  in.options = options;
  ExpertStats stats;
  if (!options.expert_stats_file.empty()) {
    stats = ExpertStats::read(options.expert_stats_file);
    in.stats = &stats;
  }
  placement_ = plan_expert_placement(model_.tensor_footprints(), L, in);
  if (!placement_.device_active) backends_.device.reset();  // the host computes everything
  be_ = &backends_.compute();
  if (!be_->supports_deepseek4())
    throw_error("%s: backend %s cannot run deepseek4 models yet", model_.file().path().c_str(), be_->name().c_str());
  const bool device = backends_.device != nullptr;
  if (device && mtp)
    throw_error("--spec-type draft-mtp: drafting with a deepseek4 MTP module on a device is not supported yet");
  if (device) {
    std::map<const uint8_t*, TensorView> copies;  // a tensor used twice is copied once
    w_.for_each_tensor([&](TensorView& t, TensorRole role, int64_t) {
      if (role != TensorRole::kEveryToken) return;
      auto it = copies.find(t.data);
      if (it == copies.end()) it = copies.emplace(t.data, upload_tensor(*be_, t)).first;
      t = it->second;
    });
  }
  // Layer L: the MTP module's block, its experts all where the model has them.
  const int64_t n_moe_layers = L + (mtp ? 1 : 0);
  experts_.resize(sz(n_moe_layers));
  for (int64_t il = 0; il < n_moe_layers; ++il) {
    const bool trunk = il < L;
    const Dsv4LayerWeights& host = trunk ? model_.weights().layers[sz(il)] : model_.mtp()->block;
    const Deepseek4Config& c = trunk ? c_ : model_.mtp_config();
    // ggml applies the clamp only above 1e-6 (llama-graph.cpp).
    const float limit = c.swiglu_clamp_exp[sz(il)] > 1e-6f ? c.swiglu_clamp_exp[sz(il)] : 0.0f;
    LayerExperts& X = experts_[sz(il)];
    X.host = {host.gate_exps, host.up_exps, host.down_exps, limit};
    X.device_slot = trunk ? placement_.device_slot[sz(il)] : std::vector<int32_t>(sz(E), -1);
    const std::vector<int32_t> on_device = trunk ? placement_.device_experts(il) : std::vector<int32_t>();
    if (device && !on_device.empty())
      X.device = {upload_experts(*be_, host.gate_exps, on_device), upload_experts(*be_, host.up_exps, on_device),
                  upload_experts(*be_, host.down_exps, on_device), limit};
  }
}

ExpertStats Deepseek4Session::expert_stats() const {
  return moe_->stats(model_.file().get_string_opt("general.name").value_or(model_.file().path()), c_.num_hidden_layers,
                     c_.num_experts_per_tok, n_evaluated_);
}

Dsv4LayerCache Deepseek4Session::alloc_layer_cache(const Deepseek4Config& c, int64_t il) {
  Dsv4LayerCache lc;
  const int64_t r = c.compress_ratio(il), d = c.head_dim;
  const int64_t row = LatentCache::storage_cols(cache_type_, d);
  lc.raw = be_->alloc(c.sliding_window + n_rows_, row);
  if (r != 0) {
    lc.state_kv = be_->alloc(state_ring_rows(r, n_rows_), Deepseek4Config::compressor_overlap(r) * d);
    lc.state_score = be_->alloc(state_ring_rows(r, n_rows_), Deepseek4Config::compressor_overlap(r) * d);
    lc.comp = be_->alloc(n_ctx_ / r + 1, row);
  }
  if (c.attention_kind(il) == Dsv4Attention::kCsa) {
    lc.index_kv = be_->alloc(state_ring_rows(4, n_rows_), Deepseek4Config::compressor_overlap(4) * c.index_head_dim);
    lc.index_score = be_->alloc(state_ring_rows(4, n_rows_), Deepseek4Config::compressor_overlap(4) * c.index_head_dim);
    lc.index_keys = be_->alloc(n_ctx_ / 4 + 1, LatentCache::storage_cols(cache_type_, c.index_head_dim));
  }
  return lc;
}

Dsv4LayerCache& Deepseek4Session::layer_cache(int64_t s, int64_t il) {
  return il < c_.num_hidden_layers ? seqs_[sz(s)].layers[sz(il)] : mtp_cache_[sz(s)];
}

Deepseek4Session::~Deepseek4Session() = default;

void Deepseek4Session::check_tokens(const int32_t* tokens, int64_t n) const {
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c_.vocab_size)
      throw_error("token id %d is outside the vocabulary (0..%lld)", tokens[i], static_cast<long long>(c_.vocab_size - 1));
}

void Deepseek4Session::reset() {
  for (SeqState& s : seqs_) s.tokens.clear(), s.high = 0, s.valid_from = 0;
  if (mtp_) mtp_follow_->reset(-1);
}

void Deepseek4Session::reevaluate(int64_t s, std::vector<int32_t> tokens) {
  SeqState& st = seqs_[sz(s)];
  st.tokens.clear();
  st.high = 0;
  st.valid_from = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(tokens.size()); i += n_batch_) {
    const int64_t m = std::min<int64_t>(n_batch_, static_cast<int64_t>(tokens.size()) - i);
    forward_step(tokens.data() + i, {SeqSpan{static_cast<int32_t>(s), m, false, false}}, nullptr, false);
  }
}

void Deepseek4Session::seq_truncate(int64_t s, int64_t n) {
  SeqState& st = seqs_.at(sz(s));
  if (n < 0) throw_error("seq_truncate: negative position %lld", static_cast<long long>(n));
  if (n >= static_cast<int64_t>(st.tokens.size())) return;
  if (mtp_) mtp_follow_->truncate(s, n);
  // The rings hold rows of positions down to high - n_rows_ - window: a
  // truncation within n_rows_ of the furthest write finds its window and
  // its partial blocks' state intact (every later write is at most
  // n_rows_ - 1 ahead of n, less than a ring's slack).
  if (st.high - n <= n_rows_ && n >= st.valid_from) {
    st.tokens.resize(sz(n));
    return;
  }
  reevaluate(s, std::vector<int32_t>(st.tokens.begin(), st.tokens.begin() + static_cast<ptrdiff_t>(n)));
}

void Deepseek4Session::copy_layer_cache(const Dsv4LayerCache& x, Dsv4LayerCache& y, int64_t ratio, int64_t n) {
  be_->copy_rows(x.raw, y.raw, x.raw.rows);
  if (ratio != 0) {
    be_->copy_rows(x.state_kv, y.state_kv, x.state_kv.rows);
    be_->copy_rows(x.state_score, y.state_score, x.state_score.rows);
    be_->copy_rows(x.comp, y.comp, n / ratio);
  }
  if (ratio == 4) {  // CSA: the indexer's state and keys
    be_->copy_rows(x.index_kv, y.index_kv, x.index_kv.rows);
    be_->copy_rows(x.index_score, y.index_score, x.index_score.rows);
    be_->copy_rows(x.index_keys, y.index_keys, n / 4);
  }
}

void Deepseek4Session::seq_copy(int64_t src, int64_t dst, int64_t n) {
  if (src == dst) return seq_truncate(src, n);
  const SeqState& a = seqs_.at(sz(src));
  SeqState& b = seqs_.at(sz(dst));
  if (n > static_cast<int64_t>(a.tokens.size()))
    throw_error("seq_copy: sequence %lld holds %zu positions, not %lld", static_cast<long long>(src), a.tokens.size(),
                static_cast<long long>(n));
  // The rings whole, the blocks up to n; then dst is src truncated to n.
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il)
    copy_layer_cache(a.layers[sz(il)], b.layers[sz(il)], c_.compress_ratio(il), n);
  b.tokens = a.tokens;
  b.high = a.high;
  b.valid_from = a.valid_from;
  if (mtp_) {  // the module's layer as the trunk's; then both truncated to n
    copy_layer_cache(mtp_cache_[sz(src)], mtp_cache_[sz(dst)], mc_->compress_ratio(mc_->num_hidden_layers), n);
    mtp_follow_->copy(src, dst, n);  // (the rings and blocks are copied whole above)
  }
  seq_truncate(dst, n);
}

void Deepseek4Session::seq_drop(int64_t s, int64_t p0, int64_t p1) {
  SeqState& st = seqs_.at(sz(s));
  const int64_t n = static_cast<int64_t>(st.tokens.size());
  if (p0 < 0 || p1 < p0 || p1 > n)
    throw_error("seq_drop: [%lld, %lld) is not inside the %lld cached positions", static_cast<long long>(p0),
                static_cast<long long>(p1), static_cast<long long>(n));
  if (p0 == p1) return;
  std::vector<int32_t> kept(st.tokens.begin() + static_cast<ptrdiff_t>(p1), st.tokens.end());
  seq_truncate(s, p0);
  for (int64_t i = 0; i < static_cast<int64_t>(kept.size()); i += n_batch_) {
    const int64_t m = std::min<int64_t>(n_batch_, static_cast<int64_t>(kept.size()) - i);
    forward_step(kept.data() + i, {SeqSpan{static_cast<int32_t>(s), m, false, false}}, nullptr, false);
  }
}

void Deepseek4Session::forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  check_tokens(tokens, n);
  forward_in_steps(tokens, n, n_batch_, logits, all_logits, [&](const int32_t* t, const SeqSpan& span, float* out) {
    forward_step(t, {span}, out, all_logits);
  });
}

void Deepseek4Session::forward_verify(const int32_t* tokens, int64_t n, float* logits) {
  be_->set_batch_invariant(true);
  forward(tokens, n, logits, true);
  be_->set_batch_invariant(false);
}

void Deepseek4Session::forward_spans(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits) {
  const int64_t total = check_step_spans(spans);
  if (total == 0) return;
  check_tokens(tokens, total);
  // Several sequences, or one verifying its drafts: every product row as it
  // would be alone, so an answer depends on neither its neighbours nor its drafts.
  be_->set_batch_invariant(spans.size() > 1 || (spans[0].all_logits && spans[0].n > 1));
  forward_step(tokens, spans, logits, false);
  be_->set_batch_invariant(false);
}

HyperConnParams Deepseek4Session::hc_params(const HyperConnWeights& w) const {
  HyperConnParams p;
  p.hc = c_.hc;
  p.width = c_.hidden_size;
  p.sinkhorn_iters = c_.sinkhorn_iters;
  p.eps = c_.hc_eps;
  p.scale = w.scale;
  p.base = w.base;
  return p;
}

void Deepseek4Session::forward_step(const int32_t* tokens, const std::vector<SeqSpan>& spans, float* logits,
                                    bool all_logits) {
  const int64_t hc = c_.hc;
  std::vector<SpanAt> at;
  int64_t n = 0;
  for (const SeqSpan& sp : spans) {
    if (sp.n == 0) continue;
    at.push_back({sp.seq, seq_pos(sp.seq), sp.n, n});
    n += sp.n;
  }
  if (n == 0) return;
  if (mtp_) {  // the module takes the last step's pairs before x_ is overwritten
    std::vector<std::pair<int32_t, int32_t>> next;
    for (const SpanAt& a : at) next.push_back({a.seq, tokens[a.r0]});
    mtp_follow_->catch_up(next);
  }

  n_evaluated_ += static_cast<uint64_t>(n);
  // X: hc copies of the embedding.
  be_->embed(w_.token_embd, tokens, n, h_);
  be_->hc_init(h_, hc, n, x_);
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il) {
    const Dsv4LayerWeights& L = w_.layers[sz(il)];
    hc_pre(L.hc_attn, L.attn_norm, n);
    attention(L, c_, il, at, n);
    be_->hc_post(hc_params(L.hc_attn), out_, post_, comb_, n, x_);
    hc_pre(L.hc_ffn, L.ffn_norm, n);
    moe(L, c_, il, tokens, n);
    be_->hc_post(hc_params(L.hc_ffn), out_, post_, comb_, n, x_);
  }
  for (const SpanAt& a : at) {
    SeqState& st = seqs_[sz(a.seq)];
    st.tokens.insert(st.tokens.end(), tokens + a.r0, tokens + a.r0 + a.n);
    st.high = std::max(st.high, a.pos0 + a.n);
  }
  if (mtp_) {  // X after the last layer, before the head gathers rows in x_
    be_->copy_rows(x_, hid_, n);
    mtp_follow_->record(tokens, at, n);
  }
  if (!logits) return;

  // The rows whose logits are wanted, gathered to the front, through the head:
  // logits = W_out RMSNorm(HC_head(X)).
  int64_t m = 0;
  int64_t r0 = 0;
  for (const SeqSpan& sp : spans) {
    const bool every = all_logits || sp.all_logits;
    for (int64_t j = every ? 0 : sp.n - 1; (every || sp.logits) && j < sp.n; ++j) {
      if (r0 + j != m) be_->copy_rows(x_.rows_from(r0 + j, 1), x_.rows_from(m, 1), 1);
      ++m;
    }
    r0 += sp.n;
  }
  const Act head_mix = mix_.reshaped(hc);
  be_->rms_norm(x_, TensorView{}, c_.rms_norm_eps, m, xn_);
  be_->matmul(w_.hc_head.fn, xn_, m, head_mix);
  be_->hc_head(hc_params(w_.hc_head), x_, head_mix, m, h_);
  be_->rms_norm(h_, w_.output_norm, c_.rms_norm_eps, m, h_);
  be_->output_head(w_.output, h_, m, logits);
}

void Deepseek4Session::hc_pre(const HyperConnWeights& w, const TensorView& norm, int64_t n) {
  be_->rms_norm(x_, TensorView{}, c_.rms_norm_eps, n, xn_);
  be_->matmul(w.fn, xn_, n, mix_);
  be_->hc_pre(hc_params(w), x_, mix_, n, h_, post_, comb_);
  be_->rms_norm(h_, norm, c_.rms_norm_eps, n, h_);
}

void Deepseek4Session::moe(const Dsv4LayerWeights& L, const Deepseek4Config& c, int64_t il, const int32_t* tokens,
                           int64_t n) {
  const int64_t K = c_.num_experts_per_tok;
  MoeRouteParams rp;
  rp.n_experts = c_.n_routed_experts;
  rp.top_k = K;
  rp.scoring = c_.scoring;
  rp.bias = L.score_bias;
  rp.norm_topk_prob = c_.norm_topk_prob;
  rp.routed_scaling_factor = c_.routed_scaling_factor;
  be_->matmul(L.router, h_, n, logit_e_);
  // The first hash_layers route by token (a table); the others by score + bias.
  if (!L.tid2eid.empty()) be_->moe_route_hashed(rp, L.tid2eid, logit_e_, tokens, n, route_ids_, route_w_);
  else be_->moe_route(rp, logit_e_, n, route_ids_, route_w_);
  // The routed experts (the device's and the host's at once, HybridMoe),
  // the shared expert meanwhile.
  moe_->begin(il, experts_[sz(il)], h_, route_ids_, n, slot_out_);
  if (L.shared) {
    const float shared_limit = c.swiglu_clamp_shexp[sz(il)] > 1e-6f ? c.swiglu_clamp_shexp[sz(il)] : 0.0f;
    be_->matmul(L.shared->gate, h_, n, sh_g_);
    be_->matmul(L.shared->up, h_, n, sh_u_);
    be_->swiglu_clamped(sh_g_, sh_u_, shared_limit, n);
  }
  moe_->finish(slot_out_);
  be_->moe_combine(slot_out_, route_w_, K, n, out_);
  if (L.shared) {
    be_->matmul(L.shared->down, sh_g_, n, slot_out_.reshaped(c_.hidden_size));
    be_->add(out_, slot_out_, n);
  }
}

}  // namespace moe
