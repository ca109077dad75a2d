// The context a run gets (-c): what was asked, or with -c 0 the model's
// trained context capped to what the latent caches of all sequences can
// take in the memory left after the weights. A context whose caches cannot
// fit is refused before any work, naming the bytes.
#pragma once

#include <cstdint>
#include <string>

namespace moe {

struct ContextChoice {
  int64_t n_ctx = 0;    // positions per sequence
  std::string notice;   // for -c 0: one line saying what was chosen and why
};

// requested: -c (0: the model's, fitted); model_ctx: the trained context;
// token_bytes: the cache bytes of one position of one sequence (all layers);
// available: bytes of memory left for the caches. Throws when an explicit
// context for n_seq sequences needs more than `available`.
ContextChoice choose_context(int64_t requested, int64_t model_ctx, uint64_t token_bytes, int64_t n_seq,
                             uint64_t available);

// The memory left for caches: MemAvailable less the weights' claim on it.
// Weights read into memory are already out of it; mapped weights will take
// their file's pages, but at most half of it (a model larger than memory
// runs from the mapping anyway). 256 MiB stay free for activations.
uint64_t memory_for_caches(uint64_t mem_available, uint64_t mapped_weight_bytes);

}  // namespace moe
