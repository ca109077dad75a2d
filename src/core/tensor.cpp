#include "core/tensor.h"

#include "core/error.h"

namespace moe {

std::string TensorView::shape_string() const {
  int nd = 4;
  while (nd > 1 && ne[nd - 1] == 1) --nd;
  std::string s = "[";
  for (int i = 0; i < nd; ++i) s += strfmt(i ? ", %lld" : "%lld", static_cast<long long>(ne[i]));
  return s + "] " + ggml_type_name(type);
}

}  // namespace moe
