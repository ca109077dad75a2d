#include "runtime/imatrix_collector.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace moe {

namespace {

// llama-imatrix ignores dense products over fewer tokens (it never says why;
// keeping the rule keeps the two tools' matrices comparable).
constexpr int64_t kMinDenseTokens = 16;

bool is_layer_weight(const std::string& name) { return name.rfind("blk.", 0) == 0; }

void add_squares(float* acc, const float* x, int64_t cols) {
  for (int64_t j = 0; j < cols; ++j) acc[j] += x[j] * x[j];
}

}  // namespace

ImatrixCollector::ImatrixCollector(std::unique_ptr<Backend> inner, ImatrixSums& sums, bool process_output)
    : inner_(std::move(inner)), sums_(sums), process_output_(process_output) {}

const float* ImatrixCollector::host_rows(const Act& x, int64_t n, std::vector<float>& buf) {
  const size_t count = static_cast<size_t>(n * x.stride);
  if (buf.size() < count) buf.resize(count);
  inner_->copy_to_host(buf.data(), x.data, count * sizeof(float));
  return buf.data();
}

ImatrixEntry& ImatrixCollector::entry(const std::string& name, int64_t cols, int64_t n_mat, int64_t n_counts) {
  ImatrixEntry& e = sums_.entries[name];
  if (e.sums.empty()) {
    e.sums.assign(static_cast<size_t>(cols * n_mat), 0.0f);
    e.counts.assign(static_cast<size_t>(n_counts), 0);
  }
  MOE_ASSERT(e.sums.size() == static_cast<size_t>(cols * n_mat) && e.counts.size() == static_cast<size_t>(n_counts),
             "importance matrix: '%s' was seen with %zu values and %zu counts, now with %lld and %lld",
             name.c_str(), e.sums.size(), e.counts.size(), static_cast<long long>(cols * n_mat),
             static_cast<long long>(n_counts));
  return e;
}

void ImatrixCollector::add_dense(const std::string& name, int64_t n_mat, int64_t mat, int64_t cols, const float* in,
                                 int64_t stride, int64_t n, bool count) {
  ImatrixEntry& e = entry(name, cols, n_mat, 1);
  float* acc = e.sums.data() + mat * cols;
  for (int64_t t = 0; t < n; ++t) add_squares(acc, in + t * stride, cols);
  if (count) e.counts[0] += n;  // one count per token, however many heads
  for (int64_t j = 0; j < cols; ++j)
    MOE_ASSERT(std::isfinite(acc[j]), "importance matrix: non-finite activations entering '%s'", name.c_str());
}

void ImatrixCollector::matmul(const TensorView& W, const Act& x, int64_t n, Act y) {
  if (n >= kMinDenseTokens && is_layer_weight(W.name)) {
    std::lock_guard<std::mutex> lock(mu_);
    add_dense(W.name, 1, 0, W.ne[0], host_rows(x, n, host_), x.stride, n, true);
  }
  inner_->matmul(W, x, n, y);
}

void ImatrixCollector::output_head(const TensorView& W, const Act& x, int64_t n, float* logits) {
  if (process_output_ && n >= kMinDenseTokens && W.name == "output.weight") {
    std::lock_guard<std::mutex> lock(mu_);
    add_dense(W.name, 1, 0, W.ne[0], host_rows(x, n, host_), x.stride, n, true);
  }
  inner_->output_head(W, x, n, logits);
}

void ImatrixCollector::mla_query_absorb(const MlaParams& p, const Act& q, const TensorView& wk_b, int64_t pos0,
                                        int64_t n, Act q_abs) {
  if (n >= kMinDenseTokens && is_layer_weight(wk_b.name)) {
    std::lock_guard<std::mutex> lock(mu_);
    const float* in = host_rows(q, n, host_);
    // Head h multiplies its q_nope, the first qk_nope values of its slice of q.
    for (int64_t h = 0; h < p.n_heads; ++h)
      add_dense(wk_b.name, p.n_heads, h, p.qk_nope_head_dim, in + h * p.qk_head_dim(), q.stride, n,
                h == p.n_heads - 1);
  }
  inner_->mla_query_absorb(p, q, wk_b, pos0, n, q_abs);
}

void ImatrixCollector::mla_output_lift(const MlaParams& p, const Act& o_lat, const TensorView& wv_b, int64_t n,
                                       Act v) {
  if (n >= kMinDenseTokens && is_layer_weight(wv_b.name)) {
    std::lock_guard<std::mutex> lock(mu_);
    const float* in = host_rows(o_lat, n, host_);
    for (int64_t h = 0; h < p.n_heads; ++h)
      add_dense(wv_b.name, p.n_heads, h, p.kv_lora_rank, in + h * p.kv_lora_rank, o_lat.stride, n,
                h == p.n_heads - 1);
  }
  inner_->mla_output_lift(p, o_lat, wv_b, n, v);
}

void ImatrixCollector::dsv4_grouped_output(const TensorView& wo_a, int64_t groups, const Act& o, int64_t n, Act oa) {
  if (n >= kMinDenseTokens && is_layer_weight(wo_a.name)) {
    std::lock_guard<std::mutex> lock(mu_);
    const float* in = host_rows(o, n, host_);
    const int64_t gd = o.cols / groups;  // group g multiplies o[t][g gd ..]
    for (int64_t g = 0; g < groups; ++g) add_dense(wo_a.name, groups, g, gd, in + g * gd, o.stride, n, g == groups - 1);
  }
  inner_->dsv4_grouped_output(wo_a, groups, o, n, oa);
}

void ImatrixCollector::grouped_experts(const ExpertWeights& w, const Act& h, const ExpertDispatch& d, Act out) {
  inner_->grouped_experts(w, h, d, out);
  if (d.empty() || !is_layer_weight(w.gate.name)) return;
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t D = w.gate.ne[0], F = w.down.ne[0], n_as = w.gate.ne[2];
  ImatrixEntry& gate = entry(w.gate.name, D, n_as, n_as);
  ImatrixEntry& up = entry(w.up.name, D, n_as, n_as);
  ImatrixEntry& down = entry(w.down.name, F, n_as, n_as);
  int64_t max_rows = 0, max_count = 0;
  for (int32_t r : d.in_row) max_rows = std::max<int64_t>(max_rows, r + 1);
  for (const ExpertGroup& g : d.groups) max_count = std::max(max_count, g.count);
  const float* hs = host_rows(h, max_rows, host_);
  if (in_.rows < max_count) {  // grows to the largest batch once, then stays
    in_ = inner_->alloc(max_count, D);
    gate_ = inner_->alloc(max_count, F);
    up_ = inner_->alloc(max_count, F);
  }
  std::vector<int32_t> identity;
  for (const ExpertGroup& g : d.groups) {
    const int64_t e = g.expert;
    // gate and up multiply the hidden state of every token routed here.
    rows_.resize(static_cast<size_t>(g.count * D));
    for (int64_t k = 0; k < g.count; ++k) {
      const float* x = hs + d.in_row[static_cast<size_t>(g.first + k)] * h.stride;
      add_squares(gate.sums.data() + e * D, x, D);
      add_squares(up.sums.data() + e * D, x, D);
      std::copy(x, x + D, rows_.begin() + k * D);
    }
    gate.counts[e] += g.count;
    up.counts[e] += g.count;
    // down multiplies silu(W_gate x) * W_up x, which only the expert computes:
    // compute it again for these rows.
    identity.resize(static_cast<size_t>(g.count));
    for (int64_t k = 0; k < g.count; ++k) identity[k] = static_cast<int32_t>(k);
    inner_->scatter_rows_from_host(rows_.data(), identity.data(), g.count, in_);
    inner_->matmul(w.gate.matrix(e), in_, g.count, gate_);
    inner_->matmul(w.up.matrix(e), in_, g.count, up_);
    if (w.swiglu_limit > 0) inner_->swiglu_clamped(gate_, up_, w.swiglu_limit, g.count);
    else inner_->swiglu(gate_, up_, g.count);
    const float* act = host_rows(gate_, g.count, act_);
    for (int64_t k = 0; k < g.count; ++k) add_squares(down.sums.data() + e * F, act + k * gate_.stride, F);
    down.counts[e] += g.count;
    for (int64_t j = 0; j < F; ++j)
      MOE_ASSERT(std::isfinite(down.sums[e * F + j]), "importance matrix: non-finite activations entering '%s'",
                 w.down.name.c_str());
  }
}

}  // namespace moe
