// A model file's identity for saved caches: a hash of every tensor's name,
// type, shape and first bytes, and the vocabulary size. Cheap (no weights
// read beyond 64 bytes each) and different for a re-quantized or retrained
// file, so a cache is never loaded into a model that did not write it.
#pragma once

#include <cstdint>

namespace moe {

class GgufFile;

uint64_t model_fingerprint(const GgufFile& f, int64_t n_vocab);

}  // namespace moe
