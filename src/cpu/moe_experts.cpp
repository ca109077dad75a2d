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
                         float* out, int64_t out_stride, ThreadPool& pool, bool allow_gemm) {
  const TensorView &gate = w.gate, &up = w.up, &down = w.down;
  const int64_t D = gate.ne[0], F = gate.ne[1], S = d.n_positions();
  MOE_ASSERT(up.ne[0] == D && up.ne[1] == F && down.ne[0] == F && down.ne[1] == D,
             "expert tensors disagree: gate [%lld, %lld], up [%lld, %lld], down [%lld, %lld]",
             static_cast<long long>(D), static_cast<long long>(F), static_cast<long long>(up.ne[0]),
             static_cast<long long>(up.ne[1]), static_cast<long long>(down.ne[0]), static_cast<long long>(down.ne[1]));
  if (S == 0) return;

  // Each group's activation rows in the layout its token count calls for
  // (the repacked GEMM for experts many tokens chose, the per-row kernels
  // otherwise), one row per sorted position, stride_* bytes apart.
  const int64_t n_groups = static_cast<int64_t>(d.groups.size());
  gate_layout_.resize(sz(n_groups));
  up_layout_.resize(sz(n_groups));
  down_layout_.resize(sz(n_groups));
  pos_group_.resize(sz(S));
  for (int64_t gi = 0; gi < n_groups; ++gi) {
    const ExpertGroup& g = d.groups[sz(gi)];
    gate_layout_[sz(gi)] = activation_layout(gate.matrix(g.expert), g.count, allow_gemm);
    up_layout_[sz(gi)] = activation_layout(up.matrix(g.expert), g.count, allow_gemm);
    down_layout_[sz(gi)] = activation_layout(down.matrix(g.expert), g.count, allow_gemm);
    std::fill_n(pos_group_.begin() + g.first, g.count, static_cast<int32_t>(gi));
  }
  const size_t stride_gate = activation_row_bytes_max(gate.matrix(0)), stride_up = activation_row_bytes_max(up.matrix(0));
  const size_t stride_down = activation_row_bytes_max(down.matrix(0));
  act_gate_.resize(stride_gate * sz(S));
  act_up_.resize(stride_up * sz(S));
  act_down_.resize(stride_down * sz(S));
  const bool same_act = gate.type == up.type;
  for_rows(pool, S, D, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* x = h + d.in_row[sz(p)] * h_stride;
      const size_t gi = sz(pos_group_[sz(p)]);
      quantize_activations(gate.matrix(0), gate_layout_[gi], x, &act_gate_[stride_gate * sz(p)]);
      if (same_act) std::memcpy(&act_up_[stride_up * sz(p)], &act_gate_[stride_gate * sz(p)], up_layout_[gi].row_bytes);
      else quantize_activations(up.matrix(0), up_layout_[gi], x, &act_up_[stride_up * sz(p)]);
    }
  });

  // gate and up: jobs of rows_f rows of one matrix of one expert.
  g_.resize(sz(S * F));
  u_.resize(sz(S * F));
  const int64_t rows_f = job_rows(n_groups * 2 * F, pool.size());
  const int64_t blocks_f = (F + rows_f - 1) / rows_f;
  tiles_.resize(sz(pool.size()));
  for_jobs(pool, n_groups * 2 * blocks_f, 2 * S * F * D, [&](int64_t j, int thread) {
    const int64_t gi = j / (2 * blocks_f);
    const ExpertGroup& g = d.groups[sz(gi)];
    const bool is_up = (j / blocks_f) % 2 == 1;
    const int64_t r0 = (j % blocks_f) * rows_f, r1 = std::min(F, r0 + rows_f);
    if (is_up)
      matmul_rows(up.matrix(g.expert), up_layout_[sz(gi)], r0, r1, &act_up_[stride_up * sz(g.first)], stride_up,
                  g.count, &u_[sz(g.first * F)], F, tiles_[sz(thread)]);
    else
      matmul_rows(gate.matrix(g.expert), gate_layout_[sz(gi)], r0, r1, &act_gate_[stride_gate * sz(g.first)],
                  stride_gate, g.count, &g_[sz(g.first * F)], F, tiles_[sz(thread)]);
  });

  // silu(gate) * up (DeepSeek-V4: clamped), then the down projection's activations.
  for_rows(pool, S, F, [&](int64_t p0, int64_t p1) {
    if (w.swiglu_limit > 0.0f) swiglu_clamped(&g_[sz(p0 * F)], &u_[sz(p0 * F)], (p1 - p0) * F, w.swiglu_limit);
    else swiglu(&g_[sz(p0 * F)], &u_[sz(p0 * F)], (p1 - p0) * F, &g_[sz(p0 * F)]);
    for (int64_t p = p0; p < p1; ++p)
      quantize_activations(down.matrix(0), down_layout_[sz(pos_group_[sz(p)])], &g_[sz(p * F)],
                           &act_down_[stride_down * sz(p)]);
  });

  y_.resize(sz(S * D));
  const int64_t rows_d = job_rows(n_groups * D, pool.size());
  const int64_t blocks_d = (D + rows_d - 1) / rows_d;
  for_jobs(pool, n_groups * blocks_d, S * F * D, [&](int64_t j, int thread) {
    const int64_t gi = j / blocks_d;
    const ExpertGroup& g = d.groups[sz(gi)];
    const int64_t r0 = (j % blocks_d) * rows_d, r1 = std::min(D, r0 + rows_d);
    matmul_rows(down.matrix(g.expert), down_layout_[sz(gi)], r0, r1, &act_down_[stride_down * sz(g.first)],
                stride_down, g.count, &y_[sz(g.first * D)], D, tiles_[sz(thread)]);
  });

  for (int64_t p = 0; p < S; ++p) std::memcpy(out + d.out_row[sz(p)] * out_stride, &y_[sz(p * D)], sz(D) * sizeof(float));
}

void GroupedExperts::run(const TensorView& gate, const TensorView& up, const TensorView& down, const float* h,
                         int64_t n, const int32_t* ids, int64_t top_k, float* out, ThreadPool& pool) {
  moe_dispatch_sort(ids, n, top_k, gate.ne[2], dispatch_, sort_scratch_);
  run(ExpertWeights{gate, up, down}, h, gate.ne[0], dispatch_, out, gate.ne[0], pool);
}

}  // namespace moe
