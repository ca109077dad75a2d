// DeepSeek-V4's saved caches (--prompt-cache, chat's /save and /load).
//
// A V4 cache is not one row per position: what a continuation from n needs
// is every block's compressed row (and CSA's index key) before n, the raw
// rows of the window before n, and the compressors' state of the block n
// falls in and the one before (CSA overlaps them). The state saves exactly
// that for n, plus h more positions of the rings (h <= kSavedHistory) so
// that truncating to anything from n - h on keeps the rows: the usual
// rerun of a saved prompt stops one token short of it.
//
// State bytes (little-endian): "DSV4", u32 version, i64 n, i64 h, then per
// layer, rows in position order (raw and compressed rows and index keys as
// the cache stores them, in its -ctk type; the rest f32):
//   raw          positions [max(0, n - h - window), n)            x head_dim
//   ratio r > 0: state kv, state score  [max(0, n - h - 2r), n)  x coff * head_dim
//                compressed rows        blocks [0, n / r)        x head_dim
//   CSA:         index kv, index score  [max(0, n - h - 8), n)   x 2 * index_dim
//                index keys             blocks [0, n / 4)        x index_dim
// The reader checks the header against the file's tokens and the length
// against what the model's shape gives, before writing anything.
#include <algorithm>
#include <cstring>

#include "model/deepseek4.h"
#include "model/model_fingerprint.h"

namespace moe {

namespace {

constexpr char kStateMagic[4] = {'D', 'S', 'V', '4'};
constexpr uint32_t kStateVersion = 2;  // 2: index keys in the cache type

size_t sz(int64_t n) { return static_cast<size_t>(n); }

// The first position of a ring's part of the state: `back` positions
// before n (what a continuation from n needs) and h more.
int64_t from(int64_t n, int64_t h, int64_t back) { return std::max<int64_t>(0, n - h - back); }

// One part of a layer's state: a ring whose last `back` positions before n
// a continuation needs (per == 0), or a table with a row per block of `per`
// positions (back == 0), rows in position order.
template <class Cache, class Fn>
void for_each_saved_part(Cache& c, const Deepseek4Config& cfg, int64_t il, Fn&& fn) {
  const int64_t r = cfg.compress_ratio(il);
  fn(c.raw, cfg.sliding_window, int64_t{0});
  if (r != 0) {
    fn(c.state_kv, 2 * r, int64_t{0});
    fn(c.state_score, 2 * r, int64_t{0});
    fn(c.comp, int64_t{0}, r);
  }
  if (cfg.attention_kind(il) == Dsv4Attention::kCsa) {
    fn(c.index_kv, int64_t{8}, int64_t{0});
    fn(c.index_score, int64_t{8}, int64_t{0});
    fn(c.index_keys, int64_t{0}, int64_t{4});
  }
}

}  // namespace

PromptCacheShape Deepseek4Session::saved_cache_shape() const {
  PromptCacheShape p;
  p.model_id = model_fingerprint(model_.file(), c_.vocab_size);
  p.model_name = model_.file().get_string_opt("general.name").value_or(model_.file().path());
  p.latent_type = kDeepseek4StateType + static_cast<uint32_t>(cache_type_);
  p.n_layers = static_cast<uint32_t>(c_.num_hidden_layers);
  p.row_floats = 0;
  p.n_ctx = n_ctx_;
  p.n_vocab = c_.vocab_size;
  return p;
}

int64_t Deepseek4Session::ring_history(const SeqState& st, int64_t n) const {
  // Every ring must still hold positions [n - h - back, n): not before the
  // loaded part (valid_from) nor overwritten (more than its rows before high).
  for (int64_t h = std::min(kSavedHistory, n); h >= 0; --h) {
    bool ok = true;
    for (int64_t il = 0; il < c_.num_hidden_layers && ok; ++il)
      for_each_saved_part(st.layers[sz(il)], c_, il, [&](const Act& ring, int64_t back, int64_t) {
        if (back == 0) return;  // a table keeps every block
        const int64_t lo = from(n, h, back);
        ok = ok && lo >= st.valid_from && lo >= st.high - ring.rows;
      });
    if (ok) return h;
  }
  return -1;
}

void Deepseek4Session::saved_cache_export(int64_t n, PromptCacheData& d) {
  SeqState& st = seqs_[0];
  MOE_ASSERT(n >= 0 && n <= static_cast<int64_t>(st.tokens.size()), "saved_cache_export: %lld of %zu positions",
             static_cast<long long>(n), st.tokens.size());
  int64_t h = ring_history(st, n);
  if (h < 0) {  // the rings moved on too far: hold exactly those positions again
    reevaluate(0, std::vector<int32_t>(st.tokens.begin(), st.tokens.begin() + static_cast<ptrdiff_t>(n)));
    h = ring_history(st, n);
    MOE_ASSERT(h >= 0, "saved_cache_export: the rings do not hold %lld positions", static_cast<long long>(n));
  }
  std::string& out = d.state;
  out.assign(kStateMagic, sizeof kStateMagic);
  auto put = [&](const void* p, size_t bytes) { out.append(static_cast<const char*>(p), bytes); };
  put(&kStateVersion, sizeof kStateVersion);
  put(&n, sizeof n);
  put(&h, sizeof h);
  std::vector<float> row;
  auto save = [&](const Act& a, int64_t lo, int64_t hi, bool ring) {
    row.resize(sz(a.cols));
    for (int64_t p = lo; p < hi; ++p) {
      be_->copy_to_host(row.data(), a.row(ring ? p % a.rows : p), sz(a.cols) * sizeof(float));
      put(row.data(), row.size() * sizeof(float));
    }
  };
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il)
    for_each_saved_part(st.layers[sz(il)], c_, il, [&](const Act& a, int64_t back, int64_t per) {
      if (back > 0) save(a, from(n, h, back), n, true);
      else save(a, 0, n / per, false);
    });
}

void Deepseek4Session::saved_cache_import(const PromptCacheData& d, int64_t n_use) {
  const std::string& b = d.state;
  const int64_t n_saved = static_cast<int64_t>(d.tokens.size());
  MOE_ASSERT(n_use >= 0 && n_use <= n_saved, "saved_cache_import: %lld of %lld positions", static_cast<long long>(n_use),
             static_cast<long long>(n_saved));
  const size_t head = sizeof kStateMagic + sizeof(uint32_t) + 2 * sizeof(int64_t);
  if (b.size() < head || std::memcmp(b.data(), kStateMagic, sizeof kStateMagic) != 0)
    throw_error("saved cache: not a DeepSeek-V4 state (no DSV4 header)");
  uint32_t version = 0;
  int64_t n = 0, h = 0;
  std::memcpy(&version, b.data() + 4, 4);
  std::memcpy(&n, b.data() + 8, 8);
  std::memcpy(&h, b.data() + 16, 8);
  if (version != kStateVersion) throw_error("saved cache: DeepSeek-V4 state version %u; this build reads %u", version, kStateVersion);
  if (n != n_saved || h < 0 || h > std::min(kSavedHistory, n))
    throw_error("saved cache: a DeepSeek-V4 state of %lld positions (%lld before them) for %lld tokens",
                static_cast<long long>(n), static_cast<long long>(h), static_cast<long long>(n_saved));
  // The length the model's shape gives, before anything is written.
  size_t want = head;
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il)
    for_each_saved_part(seqs_[0].layers[sz(il)], c_, il, [&](const Act& a, int64_t back, int64_t per) {
      want += sz(back > 0 ? n - from(n, h, back) : n / per) * sz(a.cols) * sizeof(float);
    });
  if (b.size() != want)
    throw_error("saved cache: a DeepSeek-V4 state of %zu bytes; %lld positions of this model take %zu", b.size(),
                static_cast<long long>(n), want);

  // This session's rings keep at most n_rows_ positions more than a step needs.
  const int64_t h_use = std::min(h, n_rows_);
  SeqState& st = seqs_[0];
  st.tokens.clear(), st.high = 0, st.valid_from = 0;
  size_t at = head;
  auto load = [&](Act& a, int64_t lo_saved, int64_t lo, int64_t hi, bool ring) {
    const size_t bytes = sz(a.cols) * sizeof(float);
    at += sz(lo - lo_saved) * bytes;  // positions this session's rings do not keep
    for (int64_t p = lo; p < hi; ++p, at += bytes) be_->copy_from_host(a.row(ring ? p % a.rows : p), b.data() + at, bytes);
  };
  for (int64_t il = 0; il < c_.num_hidden_layers; ++il)
    for_each_saved_part(st.layers[sz(il)], c_, il, [&](Act& a, int64_t back, int64_t per) {
      if (back > 0) load(a, from(n, h, back), from(n, h_use, back), n, true);
      else load(a, 0, 0, n / per, false);
    });
  MOE_ASSERT(at == b.size(), "saved_cache_import: read %zu of %zu bytes", at, b.size());
  st.tokens = d.tokens;
  st.high = n;
  st.valid_from = n - h_use;
  if (mtp_) mtp_follow_->reset(0);  // saved caches hold no MTP rows: the module starts over from here
  seq_truncate(0, n_use);
}

}  // namespace moe
