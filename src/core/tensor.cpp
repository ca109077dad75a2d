#include "core/tensor.h"

#include "core/error.h"

namespace moe {

std::string Device::name() const {
  switch (kind) {
    case DeviceKind::kHost: return "host";
    case DeviceKind::kCuda: return strfmt("cuda%d", index);
  }
  return "?";
}

TensorView TensorView::contiguous(std::string name, GgmlType type, std::array<int64_t, 4> ne, const uint8_t* data,
                                  Device device) {
  TensorView v;
  v.name = std::move(name);
  v.type = type;
  v.ne = ne;
  v.data = data;
  v.device = device;
  v.nb[0] = ggml_type_traits(type).type_size;
  v.nb[1] = ggml_row_size(type, ne[0]);
  v.nb[2] = v.nb[1] * static_cast<size_t>(ne[1]);
  v.nb[3] = v.nb[2] * static_cast<size_t>(ne[2]);
  return v;
}

bool TensorView::is_contiguous() const {
  return nb[1] == row_bytes() && nb[2] == nb[1] * static_cast<size_t>(ne[1]) &&
         nb[3] == nb[2] * static_cast<size_t>(ne[2]);
}

const float* TensorView::f32() const {
  MOE_ASSERT(type == GgmlType::F32, "tensor '%s' is %s, expected f32", name.c_str(), ggml_type_name(type));
  MOE_ASSERT(device.is_host(), "tensor '%s' lives on %s, not the host", name.c_str(), device.name().c_str());
  return reinterpret_cast<const float*>(data);
}

std::string TensorView::shape_string() const {
  int nd = 4;
  while (nd > 1 && ne[nd - 1] == 1) --nd;
  std::string s = "[";
  for (int i = 0; i < nd; ++i) s += strfmt(i ? ", %lld" : "%lld", static_cast<long long>(ne[i]));
  return s + "] " + ggml_type_name(type);
}

}  // namespace moe
