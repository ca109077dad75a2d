#include "runtime/context_size.h"

#include <algorithm>

#include "core/error.h"

namespace moe {

namespace {
double mib(uint64_t b) { return static_cast<double>(b) / 1048576.0; }
}  // namespace

uint64_t memory_for_caches(uint64_t mem_available, uint64_t mapped_weight_bytes) {
  constexpr uint64_t kActivations = uint64_t{256} << 20;
  const uint64_t left = mem_available - std::min(mapped_weight_bytes, mem_available / 2);
  return left > kActivations ? left - kActivations : 0;
}

ContextChoice choose_context(int64_t requested, int64_t model_ctx, uint64_t token_bytes, int64_t n_seq,
                             uint64_t available) {
  const uint64_t per_position = token_bytes * static_cast<uint64_t>(std::max<int64_t>(1, n_seq));
  ContextChoice c;
  if (requested > 0) {
    const uint64_t need = per_position * static_cast<uint64_t>(requested);
    if (need > available)
      throw_error("-c %lld%s: the latent cache needs %.1f MiB (%.1f KiB per position%s), and %.1f MiB of memory is "
                  "left after the weights; use a smaller -c%s or -ctk (q8_0 takes 27%% of f32's memory; -c 0 fits the "
                  "context to memory)",
                  static_cast<long long>(requested), n_seq > 1 ? (" -np " + std::to_string(n_seq)).c_str() : "",
                  mib(need), static_cast<double>(token_bytes) / 1024.0,
                  n_seq > 1 ? (", " + std::to_string(n_seq) + " sequences").c_str() : "", mib(available),
                  n_seq > 1 ? " or -np" : "");
    c.n_ctx = requested;
    return c;
  }
  const auto fits = static_cast<int64_t>(per_position > 0 ? available / per_position : model_ctx);
  if (fits < 1)
    throw_error("-c 0: not one position of the latent cache (%.1f KiB%s) fits in the %.1f MiB of memory left after "
                "the weights", static_cast<double>(per_position) / 1024.0, n_seq > 1 ? " for all sequences" : "",
                mib(available));
  c.n_ctx = std::min(model_ctx, fits);
  const std::string caches =
      n_seq > 1 ? strfmt("the latent caches of %lld sequences take", static_cast<long long>(n_seq))
                : std::string("the latent cache takes");
  c.notice = c.n_ctx == model_ctx
                 ? strfmt("-c 0: context %lld, the model's (%s %.1f MiB of the %.1f MiB left after the weights)",
                          static_cast<long long>(c.n_ctx), caches.c_str(),
                          mib(per_position * static_cast<uint64_t>(c.n_ctx)), mib(available))
                 : strfmt("-c 0: context %lld, not the model's %lld: %s %.1f KiB per position and %.1f MiB of memory "
                          "is left after the weights",
                          static_cast<long long>(c.n_ctx), static_cast<long long>(model_ctx), caches.c_str(),
                          static_cast<double>(per_position) / 1024.0, mib(available));
  return c;
}

}  // namespace moe
