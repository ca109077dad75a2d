// Weights repacked at load into a layout the CPU's kernels read faster than
// the file's (ik_llama.cpp's -rtr, llama.cpp's CPU repack buffers): the
// routed experts and the other whole-row products of each layer
// (for_each_product_matrix), Q4_K, Q5_0 and Q8_0, into rows interleaved four
// at a time (quant/interleaved.h), for generation's one- and two-token
// products and the GEMM's tiles.
//
// Only for a file read into memory (--no-mmap, or the automatic choice
// when the model fits twice): the repacked copy replaces the file's bytes,
// which are given back to the system tensor by tensor, so memory peaks at
// the file plus one tensor. A mapped file keeps its layout (a model larger
// than RAM stays on the page cache). Device backends copy the file's layout
// back (upload_experts), so only the host computes on these.
#pragma once

#include <cstddef>
#include <vector>

#include "core/host_buffer.h"
#include "core/tensor.h"

namespace moe {

class GgufFile;

class RepackedTensors {
 public:
  // Repacks t in place of its view when its type has a repacked layout and
  // `file` holds its bytes in memory it read; returns whether it did.
  // Throws naming the tensor when the memory is not available.
  bool repack(TensorView& t, const GgufFile& file);

  size_t bytes() const { return bytes_; }
  size_t count() const { return buffers_.size(); }

 private:
  std::vector<HostBuffer> buffers_;
  size_t bytes_ = 0;
};

}  // namespace moe
