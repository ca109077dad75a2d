#include "quant/interleaved.h"

#include "core/error.h"
#include "quant/q32_r4.h"
#include "quant/q4k_r4.h"

namespace moe {

GgmlType interleaved_type(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_K: return GgmlType::Q4_K_R4;
    case GgmlType::Q8_0: return GgmlType::Q8_0_R4;
    case GgmlType::Q5_0: return GgmlType::Q5_0_R4;
    default: return t;
  }
}

GgmlType file_layout_type(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_K_R4: return GgmlType::Q4_K;
    case GgmlType::Q8_0_R4: return GgmlType::Q8_0;
    case GgmlType::Q5_0_R4: return GgmlType::Q5_0;
    default: return t;
  }
}

bool can_interleave(const TensorView& W) {
  if (interleaved_type(W.type) == W.type || !W.device.is_host() || !W.is_contiguous()) return false;
  return W.ne[0] % ggml_type_traits(W.type).block_size == 0 && W.ne[1] % kInterleavedRows == 0;
}

size_t interleaved_bytes(const TensorView& W) {
  return ggml_row_size(interleaved_type(W.type), W.ne[0]) * static_cast<size_t>(W.n_rows());
}

namespace {

// Four rows of n values of `file` type at rows (row_stride apart) into the
// group at dst, or back.
void repack_group(GgmlType file, const uint8_t* rows, size_t row_stride, int64_t n, uint8_t* dst) {
  switch (file) {
    case GgmlType::Q4_K: return repack_q4_k_r4(rows, row_stride, n, reinterpret_cast<BlockQ4_KR4*>(dst));
    case GgmlType::Q8_0: return repack_q8_0_r4(rows, row_stride, n, reinterpret_cast<BlockQ8_0R4*>(dst));
    case GgmlType::Q5_0: return repack_q5_0_r4(rows, row_stride, n, reinterpret_cast<BlockQ5_0R4*>(dst));
    default: throw_error("no interleaved layout for %s", ggml_type_name(file));
  }
}

void unpack_group(GgmlType file, const uint8_t* group, int64_t n, uint8_t* rows, size_t row_stride) {
  switch (file) {
    case GgmlType::Q4_K: return unpack_q4_k_r4(reinterpret_cast<const BlockQ4_KR4*>(group), n, rows, row_stride);
    case GgmlType::Q8_0: return unpack_q8_0_r4(reinterpret_cast<const BlockQ8_0R4*>(group), n, rows, row_stride);
    case GgmlType::Q5_0: return unpack_q5_0_r4(reinterpret_cast<const BlockQ5_0R4*>(group), n, rows, row_stride);
    default: throw_error("no interleaved layout for %s", ggml_type_name(file));
  }
}

}  // namespace

void interleave_tensor(const TensorView& W, uint8_t* dst) {
  MOE_ASSERT(can_interleave(W), "tensor '%s' %s cannot be interleaved", W.name.c_str(), W.shape_string().c_str());
  const size_t group = ggml_row_size(interleaved_type(W.type), W.ne[0]) * kInterleavedRows;
  for (int64_t g = 0; g < W.n_rows() / kInterleavedRows; ++g)
    repack_group(W.type, W.row(g * kInterleavedRows), W.row_bytes(), W.ne[0], dst + static_cast<size_t>(g) * group);
}

TensorView interleaved_view(const TensorView& W, const uint8_t* dst) {
  return TensorView::contiguous(W.name, interleaved_type(W.type), W.ne, dst, W.device);
}

void deinterleave_tensor(const TensorView& W, uint8_t* dst) {
  MOE_ASSERT(is_interleaved(W.type) && W.is_contiguous(), "tensor '%s' is not an interleaved tensor", W.name.c_str());
  const GgmlType file = file_layout_type(W.type);
  const size_t row = ggml_row_size(file, W.ne[0]);
  for (int64_t g = 0; g < W.n_rows() / kInterleavedRows; ++g)
    unpack_group(file, W.row(g * kInterleavedRows), W.ne[0], dst + static_cast<size_t>(g * kInterleavedRows) * row, row);
}

}  // namespace moe
