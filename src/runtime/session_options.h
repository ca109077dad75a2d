// What a session of either model family is made with: its context, batch,
// sequences and cache type, the MTP module, the backends and where the
// weights go. The command line's flags fill it (cli/run_flags.h).
#pragma once

#include <cstdint>

#include "runtime/backend.h"
#include "runtime/backend_registry.h"
#include "runtime/expert_placement.h"

namespace moe {

struct SessionOptions {
  int64_t n_ctx = 4096;    // cache positions of each sequence
  int64_t n_batch = 512;   // most tokens per forward step
  int64_t n_seq = 1;       // sequences the cache holds (-np)
  LatentType cache_type = LatentType::kF32;  // -ctk
  // The model's MTP module drafts tokens (--spec-type draft-mtp): it gets a
  // cache of its own and follows every evaluated position.
  bool mtp = false;
  BackendOptions backends;
  PlacementOptions placement;
};

}  // namespace moe
