// A view of a weight tensor in its stored type: ggml dimension order
// (ne[0] is the contiguous row), data usually pointing into the mmapped file.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/ggml_type.h"

namespace moe {

struct TensorView {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  const uint8_t* data = nullptr;

  bool empty() const { return data == nullptr; }
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return ggml_row_size(type, ne[0]); }
  size_t nbytes() const { return row_bytes() * static_cast<size_t>(n_rows()); }
  const uint8_t* row(int64_t i) const { return data + static_cast<size_t>(i) * row_bytes(); }
  // The 2-D matrix i2 of a 3-D tensor (one expert of a merged expert tensor).
  TensorView matrix(int64_t i2) const {
    TensorView m = *this;
    m.ne[2] = 1;
    m.ne[3] = 1;
    m.data = data + static_cast<size_t>(i2) * row_bytes() * static_cast<size_t>(ne[1]);
    return m;
  }
  std::string shape_string() const;  // "[256, 2060] q4_K"
};

}  // namespace moe
