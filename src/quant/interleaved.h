// Whole tensors in the interleaved layouts (quant/q4k_r4.h: Q4_K_R4;
// quant/q32_r4.h: Q8_0_R4, Q5_0_R4): rows four at a time, each group of
// four rows where row 4g would start, so ggml's row arithmetic still finds
// a group (and a matrix of a merged expert tensor). In memory only: the
// model repacks its routed experts at load (model/repacked_tensors.h), the
// CPU's matmul reads them (cpu/matmul_interleaved.h), a device gets the
// file's layout back.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace moe {

inline constexpr int64_t kInterleavedRows = 4;

// The interleaved type of a file type (t itself when it has none), and the
// file type of an interleaved one (t itself for a file type).
GgmlType interleaved_type(GgmlType t);
GgmlType file_layout_type(GgmlType t);
inline bool is_interleaved(GgmlType t) { return file_layout_type(t) != t; }
// The bytes of W's rows in its file type: what a device holds of it, and
// what the placement planner counts.
inline size_t file_layout_bytes(const TensorView& W) {
  return ggml_row_size(file_layout_type(W.type), W.ne[0]) * static_cast<size_t>(W.n_rows());
}

// A host tensor whose type has an interleaved layout, contiguous, its rows
// per matrix a multiple of 4.
bool can_interleave(const TensorView& W);
size_t interleaved_bytes(const TensorView& W);
// W's rows into dst (interleaved_bytes(W)); the view of the result.
void interleave_tensor(const TensorView& W, uint8_t* dst);
TensorView interleaved_view(const TensorView& W, const uint8_t* dst);
// An interleaved tensor back to its file type's bytes, byte for byte
// (dst: ggml_row_size(file type) per row).
void deinterleave_tensor(const TensorView& W, uint8_t* dst);

}  // namespace moe
