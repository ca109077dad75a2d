#include "model/tensor_binder.h"

#include <cstring>

#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "quant/dequantize.h"

namespace moe {

namespace {

std::string shape_str(std::initializer_list<int64_t> s) {
  std::string r = "[";
  bool first = true;
  for (int64_t d : s) {
    r += strfmt(first ? "%lld" : ", %lld", static_cast<long long>(d));
    first = false;
  }
  return r + "]";
}

}  // namespace

bool TensorBinder::has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }

const std::string& TensorBinder::path() const { return f_.path(); }

TensorView TensorBinder::bind(const std::string& name, std::initializer_list<int64_t> shape, bool check_compute) {
  const GgufTensorInfo* t = f_.find_tensor(name);
  if (!t) throw_error("%s: tensor '%s' is missing (expected %s)", f_.path().c_str(), name.c_str(), shape_str(shape).c_str());
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  std::vector<int64_t> want(shape);
  bool ok = t->shape.size() <= 4;
  for (size_t i = 0; ok && i < 4; ++i) {
    const int64_t have = i < t->shape.size() ? t->shape[i] : 1;
    const int64_t exp = i < want.size() ? want[i] : 1;
    ok = have == exp;
    ne[i] = have;
  }
  if (!ok)
    throw_error("%s: tensor '%s': expected %s, got %s %s", f_.path().c_str(), name.c_str(), shape_str(shape).c_str(),
                t->shape_string().c_str(), ggml_type_name(t->type));
  if (check_compute) ggml_require_supported(t->type, "tensor '" + name + "'");
  return TensorView::contiguous(name, t->type, ne, t->data);
}

TensorView TensorBinder::tensor(const std::string& name, std::initializer_list<int64_t> shape) {
  return bind(name, shape, true);
}

TensorView TensorBinder::tensor_of_type(const std::string& name, std::initializer_list<int64_t> shape, GgmlType type) {
  TensorView v = bind(name, shape, false);
  if (v.type != type)
    throw_error("%s: tensor '%s' is %s, expected %s", f_.path().c_str(), name.c_str(), ggml_type_name(v.type),
                ggml_type_name(type));
  return v;
}

TensorView TensorBinder::vector_f32(const std::string& name, int64_t n) { return tensor_f32(name, {n}); }

TensorView TensorBinder::tensor_f32(const std::string& name, std::initializer_list<int64_t> shape) {
  const TensorView v = tensor(name, shape);
  if (v.type == GgmlType::F32) return v;
  std::vector<float> values(static_cast<size_t>(v.n_elements()));
  for (int64_t r = 0; r < v.n_rows(); ++r) dequantize_row_ref(v.type, v.row(r), values.data() + r * v.ne[0], v.ne[0]);
  return owned_f32(name, v.ne, std::move(values));
}

TensorView TensorBinder::owned_f32(const std::string& name, std::array<int64_t, 4> ne, std::vector<float> values) {
  auto buf = std::make_shared<std::vector<uint8_t>>(values.size() * sizeof(float));
  std::memcpy(buf->data(), values.data(), buf->size());
  TensorView v = TensorView::contiguous(name, GgmlType::F32, ne, buf->data());
  owned_.push_back(std::move(buf));
  return v;
}

std::string blk(int64_t il, const char* what) { return strfmt("blk.%lld.%s", static_cast<long long>(il), what); }

}  // namespace moe
