#include "runtime/moe_dispatch.h"

#include "core/error.h"

namespace moe {

void moe_dispatch_sort(const int32_t* ids, int64_t n_tokens, int64_t top_k, int64_t n_experts, ExpertDispatch& d,
                       std::vector<int64_t>& start) {
  const int64_t S = n_tokens * top_k;
  // Counting sort: start[e] is the first sorted position of expert e.
  start.assign(static_cast<size_t>(n_experts + 1), 0);
  for (int64_t s = 0; s < S; ++s) {
    MOE_DASSERT(ids[s] >= 0 && ids[s] < n_experts);
    ++start[static_cast<size_t>(ids[s] + 1)];
  }
  for (int64_t e = 0; e < n_experts; ++e) start[static_cast<size_t>(e + 1)] += start[static_cast<size_t>(e)];
  d.in_row.resize(static_cast<size_t>(S));
  d.out_row.resize(static_cast<size_t>(S));
  d.groups.clear();
  for (int64_t e = 0; e < n_experts; ++e) {
    const int64_t first = start[static_cast<size_t>(e)], count = start[static_cast<size_t>(e + 1)] - first;
    if (count > 0) d.groups.push_back({static_cast<int32_t>(e), first, count});
  }
  for (int64_t s = 0; s < S; ++s) {
    const int64_t p = start[static_cast<size_t>(ids[s])]++;
    d.in_row[static_cast<size_t>(p)] = static_cast<int32_t>(s / top_k);
    d.out_row[static_cast<size_t>(p)] = static_cast<int32_t>(s);
  }
}

void moe_dispatch_split(const ExpertDispatch& all, const std::vector<int32_t>& device_slot, int64_t n_tokens,
                        DispatchSplit& out) {
  ExpertDispatch& dev = out.device;
  ExpertDispatch& host = out.host;
  dev.in_row.clear(), dev.out_row.clear(), dev.groups.clear();
  host.in_row.clear(), host.out_row.clear(), host.groups.clear();
  out.host_tokens.clear();
  out.host_slots.clear();
  out.compact_.assign(static_cast<size_t>(n_tokens), -1);
  for (const ExpertGroup& g : all.groups) {
    const int32_t slot = device_slot[static_cast<size_t>(g.expert)];
    ExpertDispatch& to = slot >= 0 ? dev : host;
    to.groups.push_back({slot >= 0 ? slot : g.expert, to.n_positions(), g.count});
    for (int64_t p = g.first; p < g.first + g.count; ++p) {
      const int32_t tok = all.in_row[static_cast<size_t>(p)], row = all.out_row[static_cast<size_t>(p)];
      if (slot >= 0) {
        dev.in_row.push_back(tok);
        dev.out_row.push_back(row);
        continue;
      }
      int32_t& c = out.compact_[static_cast<size_t>(tok)];
      if (c < 0) {
        c = static_cast<int32_t>(out.host_tokens.size());
        out.host_tokens.push_back(tok);
      }
      host.in_row.push_back(c);
      host.out_row.push_back(static_cast<int32_t>(out.host_slots.size()));
      out.host_slots.push_back(row);
    }
  }
}

}  // namespace moe
