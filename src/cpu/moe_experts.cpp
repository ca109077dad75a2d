#include "cpu/moe_experts.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "runtime/moe_dispatch.h"

namespace moe {

namespace {

// Rows per job: about 8 jobs per thread, so the last one to finish leaves
// little idle time, but at least 64 rows (taking a job costs nothing next to
// it) and up to 512: in generation each job streams its rows from memory, and
// a longer contiguous run keeps the hardware prefetcher going.
int64_t job_rows(int64_t total_rows, int n_threads) {
  const int64_t per = total_rows / (8 * std::max(1, n_threads));
  return std::clamp<int64_t>((per + 15) / 16 * 16, 64, 512);
}

inline size_t sz(int64_t v) { return static_cast<size_t>(v); }

// Jobs on the pool when there is enough work (multiply-adds) to pay for
// waking it, else on the calling thread.
template <typename Fn>
void for_jobs(ThreadPool& pool, int64_t n_jobs, int64_t macs, const Fn& fn) {
  if (macs < (int64_t{1} << 18)) {
    for (int64_t j = 0; j < n_jobs; ++j) fn(j, 0);
  } else {
    pool.parallel_jobs(n_jobs, fn);
  }
}

// Row-wise work over n rows, on the pool when there is enough of it.
template <typename Fn>
void for_rows(ThreadPool& pool, int64_t n, int64_t cost_per_row, const Fn& fn) {
  if (n * cost_per_row < (int64_t{1} << 16)) fn(0, n);
  else pool.parallel_for(n, [&](int64_t r0, int64_t r1, int) { fn(r0, r1); });
}

}  // namespace

void GroupedExperts::run(const ExpertWeights& w, const float* h, int64_t h_stride, const ExpertDispatch& d,
                         float* out, int64_t out_stride, ThreadPool& pool) {
  const TensorView &gate = w.gate, &up = w.up, &down = w.down;
  const int64_t D = gate.ne[0], F = gate.ne[1], S = d.n_positions();
  MOE_ASSERT(up.ne[0] == D && up.ne[1] == F && down.ne[0] == F && down.ne[1] == D,
             "expert tensors disagree: gate [%lld, %lld], up [%lld, %lld], down [%lld, %lld]",
             static_cast<long long>(D), static_cast<long long>(F), static_cast<long long>(up.ne[0]),
             static_cast<long long>(up.ne[1]), static_cast<long long>(down.ne[0]), static_cast<long long>(down.ne[1]));
  if (S == 0) return;

  // Activations in sorted order: each position's row quantized for gate
  // (and copied for up when both take the same partner type).
  const size_t rb_gate = activation_row_bytes(gate.matrix(0)), rb_up = activation_row_bytes(up.matrix(0));
  const size_t rb_down = activation_row_bytes(down.matrix(0));
  act_gate_.resize(rb_gate * sz(S));
  act_up_.resize(rb_up * sz(S));
  act_down_.resize(rb_down * sz(S));
  const bool same_act = gate.type == up.type;
  for_rows(pool, S, D, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* x = h + d.in_row[sz(p)] * h_stride;
      quantize_activations(gate.matrix(0), x, 1, &act_gate_[rb_gate * sz(p)]);
      if (same_act) std::memcpy(&act_up_[rb_up * sz(p)], &act_gate_[rb_gate * sz(p)], rb_up);
      else quantize_activations(up.matrix(0), x, 1, &act_up_[rb_up * sz(p)]);
    }
  });

  // gate and up: jobs of rows_f rows of one matrix of one expert.
  g_.resize(sz(S * F));
  u_.resize(sz(S * F));
  const int64_t n_groups = static_cast<int64_t>(d.groups.size());
  const int64_t rows_f = job_rows(n_groups * 2 * F, pool.size());
  const int64_t blocks_f = (F + rows_f - 1) / rows_f;
  for_jobs(pool, n_groups * 2 * blocks_f, 2 * S * F * D, [&](int64_t j, int) {
    const ExpertGroup& g = d.groups[sz(j / (2 * blocks_f))];
    const bool is_up = (j / blocks_f) % 2 == 1;
    const int64_t r0 = (j % blocks_f) * rows_f, r1 = std::min(F, r0 + rows_f);
    if (is_up) matmul_rows(up.matrix(g.expert), r0, r1, &act_up_[rb_up * sz(g.first)], g.count, &u_[sz(g.first * F)], F);
    else matmul_rows(gate.matrix(g.expert), r0, r1, &act_gate_[rb_gate * sz(g.first)], g.count, &g_[sz(g.first * F)], F);
  });

  // silu(gate) * up, then the down projection's activations.
  for_rows(pool, S, F, [&](int64_t p0, int64_t p1) {
    swiglu(&g_[sz(p0 * F)], &u_[sz(p0 * F)], (p1 - p0) * F, &g_[sz(p0 * F)]);
    quantize_activations(down.matrix(0), &g_[sz(p0 * F)], p1 - p0, &act_down_[rb_down * sz(p0)]);
  });

  y_.resize(sz(S * D));
  const int64_t rows_d = job_rows(n_groups * D, pool.size());
  const int64_t blocks_d = (D + rows_d - 1) / rows_d;
  for_jobs(pool, n_groups * blocks_d, S * F * D, [&](int64_t j, int) {
    const ExpertGroup& g = d.groups[sz(j / blocks_d)];
    const int64_t r0 = (j % blocks_d) * rows_d, r1 = std::min(D, r0 + rows_d);
    matmul_rows(down.matrix(g.expert), r0, r1, &act_down_[rb_down * sz(g.first)], g.count, &y_[sz(g.first * D)], D);
  });

  for (int64_t p = 0; p < S; ++p) std::memcpy(out + d.out_row[sz(p)] * out_stride, &y_[sz(p * D)], sz(D) * sizeof(float));
}

void GroupedExperts::run(const TensorView& gate, const TensorView& up, const TensorView& down, const float* h,
                         int64_t n, const int32_t* ids, int64_t top_k, float* out, ThreadPool& pool) {
  moe_dispatch_sort(ids, n, top_k, gate.ne[2], dispatch_, sort_scratch_);
  run(ExpertWeights{gate, up, down}, h, gate.ne[0], dispatch_, out, gate.ne[0], pool);
}

}  // namespace moe
