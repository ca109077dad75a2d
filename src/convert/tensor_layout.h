// One tensor of a GGUF layout as a model maker plans it: name, shape and what
// it holds (which decides moe-synth's random contents and is read by the
// converter to check what it found in a checkpoint).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

// Norms 1, biases 0, routers and matrices random, tables (i32 token ->
// experts) random distinct experts per row.
enum class LayoutRole { kNorm, kBias, kRouter, kEmbed, kMatrix, kTable };

struct LayoutTensor {
  std::string name;
  std::vector<int64_t> shape;  // ggml order
  LayoutRole role;
};

}  // namespace moe
