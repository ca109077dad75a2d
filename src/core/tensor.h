// A view of a tensor in its stored type, ggml dimension order (ne[0] is the
// contiguous row), with byte strides and the memory it lives in: the mmapped
// file or memory we own on the host, or a device's memory. Every weight,
// norm and bias of a model is one of these, so a planner can walk them and a
// backend can copy them to where it computes.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/ggml_type.h"

namespace moe {

// Where bytes live. The host is every CPU's memory (the file mapping
// included); a device is a GPU's memory, by index. A CPU backend standing in
// for a device owns host memory and reports kHost.
enum class DeviceKind : uint8_t { kHost, kCuda };

struct Device {
  DeviceKind kind = DeviceKind::kHost;
  int index = 0;

  bool is_host() const { return kind == DeviceKind::kHost; }
  bool operator==(const Device&) const = default;
  std::string name() const;  // "host", "cuda0"
};

struct TensorView {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  // Byte strides as ggml's nb: nb[0] the bytes of one block, nb[1] of one
  // row, nb[2] of one matrix (one expert of a merged expert tensor), nb[3].
  std::array<size_t, 4> nb{0, 0, 0, 0};
  const uint8_t* data = nullptr;
  Device device;

  // A densely packed tensor of this shape at `data`.
  static TensorView contiguous(std::string name, GgmlType type, std::array<int64_t, 4> ne, const uint8_t* data,
                               Device device = {});

  bool empty() const { return data == nullptr; }
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return ggml_row_size(type, ne[0]); }
  // Bytes the tensor spans (all of them when contiguous).
  size_t nbytes() const { return row_bytes() * static_cast<size_t>(n_rows()); }
  bool is_contiguous() const;
  // Row i of a contiguous tensor, counting rows across matrices.
  const uint8_t* row(int64_t i) const { return data + static_cast<size_t>(i) * nb[1]; }
  // The 2-D matrix i2 of a 3-D tensor (one expert of a merged expert tensor).
  TensorView matrix(int64_t i2) const {
    TensorView m = *this;
    m.ne[2] = 1;
    m.ne[3] = 1;
    m.nb[3] = m.nb[2];
    m.data = data + static_cast<size_t>(i2) * nb[2];
    return m;
  }
  // The values of an f32 tensor (norm weights, biases). Host memory only.
  const float* f32() const;
  std::string shape_string() const;  // "[256, 2060] q4_K"
};

}  // namespace moe
