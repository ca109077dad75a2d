#include "runtime/backend.h"

#include <vector>

#include "core/error.h"
#include "quant/interleaved.h"

namespace moe {

const char* latent_type_name(LatentType t) {
  switch (t) {
    case LatentType::kF32: return "f32";
    case LatentType::kBf16: return "bf16";
    case LatentType::kF16: return "f16";
    case LatentType::kQ8_0: return "q8_0";
  }
  return "?";
}

GgmlType latent_ggml_type(LatentType t) {
  switch (t) {
    case LatentType::kF32: return GgmlType::F32;
    case LatentType::kBf16: return GgmlType::BF16;
    case LatentType::kF16: return GgmlType::F16;
    case LatentType::kQ8_0: return GgmlType::Q8_0;
  }
  return GgmlType::F32;
}

LatentType parse_latent_type(const std::string& s, const char* flag) {
  for (LatentType t : {LatentType::kF32, LatentType::kF16, LatentType::kBf16, LatentType::kQ8_0})
    if (s == latent_type_name(t)) return t;
  throw_error("%s %s: the latent cache can be f32, f16, bf16 or q8_0", flag, s.c_str());
}

namespace {

// A device computes on the file's layout: a tensor repacked for the host's
// kernels (model/repacked_tensors.h) goes back to it on the way.
GgmlType device_type(const TensorView& host) { return file_layout_type(host.type); }

void copy_matrix_to(Backend& be, uint8_t* dst, const TensorView& m) {
  const size_t bytes = file_layout_bytes(m);
  if (device_type(m) == m.type) return be.copy_from_host(dst, m.data, bytes);
  std::vector<uint8_t> rows(bytes);
  deinterleave_tensor(m, rows.data());
  be.copy_from_host(dst, rows.data(), bytes);
}

}  // namespace

TensorView upload_tensor(Backend& be, const TensorView& host) {
  MOE_ASSERT(host.device.is_host() && host.is_contiguous(), "tensor '%s' is not a contiguous host tensor",
             host.name.c_str());
  const size_t bytes = file_layout_bytes(host);
  uint8_t* dst = be.alloc_weight_bytes(bytes);
  copy_matrix_to(be, dst, host);
  return TensorView::contiguous(host.name, device_type(host), host.ne, dst, be.device());
}

TensorView upload_experts(Backend& be, const TensorView& host, const std::vector<int32_t>& experts) {
  MOE_ASSERT(host.device.is_host() && host.ne[3] == 1, "tensor '%s' is not a host expert tensor", host.name.c_str());
  const size_t matrix = file_layout_bytes(host.matrix(0));
  uint8_t* dst = be.alloc_weight_bytes(matrix * experts.size());
  for (size_t i = 0; i < experts.size(); ++i) {
    MOE_ASSERT(experts[i] >= 0 && experts[i] < host.ne[2], "expert %d is not in '%s'", experts[i], host.name.c_str());
    copy_matrix_to(be, dst + i * matrix, host.matrix(experts[i]));
  }
  return TensorView::contiguous(host.name, device_type(host),
                                {host.ne[0], host.ne[1], static_cast<int64_t>(experts.size()), 1}, dst, be.device());
}

}  // namespace moe

// ---- DeepSeek-V4: a backend that has not implemented these refuses ------------------------
namespace moe {

namespace {
[[noreturn]] void no_dsv4(const Backend& b, const char* op) {
  throw_error("backend %s has no DeepSeek-V4 op %s", b.name().c_str(), op);
}
}  // namespace

void Backend::hc_init(const Act&, int64_t, int64_t, Act) { no_dsv4(*this, "hc_init"); }
void Backend::hc_pre(const HyperConnParams&, const Act&, const Act&, int64_t, Act, Act, Act) { no_dsv4(*this, "hc_pre"); }
void Backend::hc_post(const HyperConnParams&, const Act&, const Act&, const Act&, int64_t, Act) {
  no_dsv4(*this, "hc_post");
}
void Backend::hc_head(const HyperConnParams&, const Act&, const Act&, int64_t, Act) { no_dsv4(*this, "hc_head"); }
void Backend::dsv4_qkv(const Dsv4AttnParams&, Act, const Act&, Dsv4LayerCache&, int64_t, int64_t) {
  no_dsv4(*this, "dsv4_qkv");
}
void Backend::dsv4_compress(const Dsv4AttnParams&, const Act&, const Act&, const TensorView&, const TensorView&, bool,
                            Dsv4LayerCache&, int64_t, int64_t) {
  no_dsv4(*this, "dsv4_compress");
}
void Backend::dsv4_index_select(const Dsv4AttnParams&, Act, const Act&, const Dsv4LayerCache&, int64_t, int64_t, Ids) {
  no_dsv4(*this, "dsv4_index_select");
}
void Backend::dsv4_attention(const Dsv4AttnParams&, const Act&, const Dsv4LayerCache&, const TensorView&, const Ids&,
                             int64_t, int64_t, Act) {
  no_dsv4(*this, "dsv4_attention");
}
void Backend::dsv4_grouped_output(const TensorView&, int64_t, const Act&, int64_t, Act) {
  no_dsv4(*this, "dsv4_grouped_output");
}
void Backend::moe_route_hashed(const MoeRouteParams&, const TensorView&, const Act&, const int32_t*, int64_t, Ids, Act) {
  no_dsv4(*this, "moe_route_hashed");
}
void Backend::swiglu_clamped(Act, const Act&, float, int64_t) { no_dsv4(*this, "swiglu_clamped"); }

}  // namespace moe
