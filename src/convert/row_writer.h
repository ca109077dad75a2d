// The converters' output step: float32 rows quantized to a tensor's type in
// parallel and appended to the GGUF being written, with progress.
#pragma once

#include <cstdint>
#include <vector>

#include "convert/convert_checkpoint.h"
#include "core/ggml_type.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "gguf/gguf_set_writer.h"
#include "quant/quantize.h"

namespace moe {

// Converts `n_rows` float32 rows of `ne0` to `type` in parallel and appends them to the output.
class RowWriter {
 public:
  RowWriter(GgufSetWriter& w, ThreadPool& pool, ProgressBar& bar) : w_(w), pool_(pool), bar_(bar) {}

  void write(const PlannedTensor& p, const float* x, int64_t n_rows) {
    const int64_t ne0 = p.ne[0];
    const size_t row_bytes = ggml_row_size(p.type, ne0);
    bytes_.resize(row_bytes * static_cast<size_t>(n_rows));
    pool_.parallel_for(n_rows, [&](int64_t begin, int64_t end, int) {
      for (int64_t r = begin; r < end; ++r)
        quantize_row_ref(p.type, x + r * ne0, bytes_.data() + static_cast<size_t>(r) * row_bytes, ne0);
    });
    w_.write_tensor_part(bytes_.data(), bytes_.size());
    bar_.advance(bytes_.size(), p.name);
  }

  // Bytes already in the tensor's type (a lossless repack).
  void write_raw(const PlannedTensor& p, const uint8_t* bytes, size_t n) {
    w_.write_tensor_part(bytes, n);
    bar_.advance(n, p.name);
  }

 private:
  GgufSetWriter& w_;
  ThreadPool& pool_;
  ProgressBar& bar_;
  std::vector<uint8_t> bytes_;
};

}  // namespace moe
