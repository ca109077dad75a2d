#include "model/model_fingerprint.h"

#include <algorithm>

#include "gguf/gguf_reader.h"

namespace moe {

uint64_t model_fingerprint(const GgufFile& f, int64_t n_vocab) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 0x100000001b3ull;
  };
  mix(&n_vocab, sizeof n_vocab);
  for (const GgufTensorInfo& t : f.tensors()) {
    mix(t.name.data(), t.name.size());
    mix(&t.type, sizeof t.type);
    mix(t.shape.data(), t.shape.size() * sizeof(int64_t));
    mix(t.data, static_cast<size_t>(std::min<uint64_t>(t.nbytes, 64)));
  }
  return h;
}

}  // namespace moe
