#include "convert/safetensors.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "convert/fp8.h"
#include "core/fp16.h"
#include "core/mapped_file.h"

namespace moe {

namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

struct DtypeTraits {
  SafetensorsDtype dtype;
  const char* name;
  uint64_t size;
};

constexpr DtypeTraits kDtypes[] = {
    {SafetensorsDtype::F64, "F64", 8},        {SafetensorsDtype::F32, "F32", 4},
    {SafetensorsDtype::F16, "F16", 2},        {SafetensorsDtype::BF16, "BF16", 2},
    {SafetensorsDtype::I64, "I64", 8},        {SafetensorsDtype::I32, "I32", 4},
    {SafetensorsDtype::I16, "I16", 2},        {SafetensorsDtype::I8, "I8", 1},
    {SafetensorsDtype::U8, "U8", 1},          {SafetensorsDtype::BOOL, "BOOL", 1},
    {SafetensorsDtype::F8_E4M3, "F8_E4M3", 1}, {SafetensorsDtype::F8_E5M2, "F8_E5M2", 1},
    {SafetensorsDtype::F8_E8M0, "F8_E8M0", 1},
};

// Limits on what a header may describe, whatever its size. DeepSeek-V3's
// shards hold at most a few thousand tensors of at most 2 dimensions.
constexpr int kMaxJsonDepth = 4;  // {"t": {"shape": [..]}} is depth 3
constexpr size_t kMaxDims = 16;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Nesting depth of JSON text, skipping strings, stopping at the first level
// beyond `max_depth`. Run before parsing so that "[[[[...]]]]" cannot make
// the parser build millions of levels. Returns the offset of the bracket that
// went too deep, or SIZE_MAX.
size_t json_too_deep_at(const char* p, size_t n, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return i;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return SIZE_MAX;
}

// Parses JSON text, reporting the first key repeated within one object
// (nlohmann would silently keep one of them). Throws moe::Error prefixed with
// `what` on a syntax error, excess nesting or a duplicate key.
template <typename J>
J parse_json_strict(const char* p, size_t n, const std::string& what) {
  if (const size_t at = json_too_deep_at(p, n, kMaxJsonDepth); at != SIZE_MAX)
    throw_error("%s: at byte %zu: JSON nested deeper than %d levels", what.c_str(), at, kMaxJsonDepth);
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  auto cb = [&](int /*depth*/, typename J::parse_event_t ev, J& parsed) {
    switch (ev) {
      case J::parse_event_t::object_start: keys.emplace_back(); break;
      case J::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case J::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() && !keys.back().insert(parsed.template get<std::string>()).second &&
            duplicate.empty())
          duplicate = parsed.template get<std::string>();
        break;
      default: break;
    }
    return true;
  };
  J j;
  try {
    j = J::parse(p, p + n, cb, /*allow_exceptions=*/true);
  } catch (const typename J::exception& e) {
    throw_error("%s: invalid JSON: %s", what.c_str(), e.what());
  }
  if (!duplicate.empty()) throw_error("%s: key '%s' appears more than once", what.c_str(), duplicate.c_str());
  return j;
}

const char* json_type(const Json& j) { return j.type_name(); }

// A non-negative JSON integer that fits in int64 (the types nlohmann gives
// 1, -1 and 1e3 / 18446744073709551616 are unsigned, integer and float).
bool json_to_u63(const Json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  const uint64_t v = j.get<uint64_t>();
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *out = v;
  return true;
}

}  // namespace

const char* safetensors_dtype_name(SafetensorsDtype t) {
  for (const auto& d : kDtypes)
    if (d.dtype == t) return d.name;
  return "?";
}

uint64_t safetensors_dtype_size(SafetensorsDtype t) {
  for (const auto& d : kDtypes)
    if (d.dtype == t) return d.size;
  return 0;
}

std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.dtype;
  return std::nullopt;
}

std::string SafetensorInfo::shape_string() const { return shape_str(shape); }

// ---- one file ---------------------------------------------------------------------

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  SafetensorsFile f;
  f.path_ = name;
  const char* path = name.c_str();
  if (size < 8) throw_error("%s: file is %zu bytes, too short for the 8-byte header length", path, size);
  uint64_t n;
  std::memcpy(&n, data, 8);  // little-endian hosts only, as the rest of moe.cpp
  const uint64_t after = size - 8;
  if (n > after)
    throw_error("%s: header length %" PRIu64 " exceeds the %" PRIu64 " bytes after the length field (file truncated?)",
                path, n, after);
  if (n > kMaxHeaderBytes)
    throw_error("%s: header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes", path, n, kMaxHeaderBytes);
  if (n < 2 || data[8] != '{')
    throw_error("%s: header must be a JSON object starting with '{' at byte 8", path);
  f.header_bytes_ = n;
  const uint8_t* buffer = data + 8 + n;
  const uint64_t buffer_size = after - n;

  const Json header = parse_json_strict<Json>(reinterpret_cast<const char*>(data + 8), n, name + ": header");
  if (!header.is_object()) throw_error("%s: header is a JSON %s, expected an object", path, json_type(header));

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) throw_error("%s: __metadata__ is a JSON %s, expected an object", path, json_type(value));
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          throw_error("%s: __metadata__ key '%s' is a JSON %s, expected a string", path, mk.c_str(), json_type(mv));
        f.metadata_.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    const char* tn = key.c_str();
    if (key.empty()) throw_error("%s: a tensor has an empty name", path);
    if (!value.is_object())
      throw_error("%s: tensor '%s': entry is a JSON %s, expected an object", path, tn, json_type(value));
    for (const auto& [field, _] : value.items())
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        throw_error("%s: tensor '%s': unknown field '%s' (expected dtype, shape, data_offsets)", path, tn,
                    field.c_str());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) throw_error("%s: tensor '%s': field '%s' is missing", path, tn, field);

    SafetensorInfo t;
    t.name = key;
    t.file = name;
    const Json& dt = value["dtype"];
    if (!dt.is_string()) throw_error("%s: tensor '%s': dtype is a JSON %s, expected a string", path, tn, json_type(dt));
    const auto dtype = safetensors_dtype_from_name(dt.get_ref<const std::string&>());
    if (!dtype)
      throw_error("%s: tensor '%s': unknown dtype '%s' (expected one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL "
                  "F8_E4M3 F8_E5M2 F8_E8M0)",
                  path, tn, dt.get_ref<const std::string&>().c_str());
    t.dtype = *dtype;

    const Json& sh = value["shape"];
    if (!sh.is_array()) throw_error("%s: tensor '%s': shape is a JSON %s, expected an array", path, tn, json_type(sh));
    if (sh.size() > kMaxDims)
      throw_error("%s: tensor '%s': shape has %zu dimensions, at most %zu supported", path, tn, sh.size(), kMaxDims);
    uint64_t n_el = 1;
    for (size_t d = 0; d < sh.size(); ++d) {
      uint64_t v;
      if (!json_to_u63(sh[d], &v))
        throw_error("%s: tensor '%s': shape[%zu] is %s, expected a non-negative integer below 2^63", path, tn, d,
                    sh[d].dump().c_str());
      if (v != 0 && n_el > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / v)
        throw_error("%s: tensor '%s': element count of shape %s overflows", path, tn, sh.dump().c_str());
      n_el *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    t.n_elements = static_cast<int64_t>(n_el);
    const uint64_t esize = safetensors_dtype_size(t.dtype);
    if (n_el > std::numeric_limits<uint64_t>::max() / esize)
      throw_error("%s: tensor '%s': size in bytes of shape %s overflows", path, tn, sh.dump().c_str());
    t.nbytes = n_el * esize;

    const Json& off = value["data_offsets"];
    uint64_t begin, end;
    if (!off.is_array() || off.size() != 2 || !json_to_u63(off[0], &begin) || !json_to_u63(off[1], &end))
      throw_error("%s: tensor '%s': data_offsets is %s, expected [begin, end] (two non-negative integers)", path, tn,
                  off.dump().c_str());
    if (begin > end)
      throw_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin", path, tn, begin, end);
    if (end > buffer_size)
      throw_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] beyond the %" PRIu64
                  "-byte data buffer (file truncated?)",
                  path, tn, begin, end, buffer_size);
    if (end - begin != t.nbytes)
      throw_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64 " bytes, expected %" PRIu64
                  " for %s %s",
                  path, tn, begin, end, end - begin, t.nbytes, safetensors_dtype_name(t.dtype), t.shape_string().c_str());
    t.offset = begin;
    t.data = buffer + begin;
    f.tensors_.push_back(std::move(t));
  }

  // The tensors must tile the data buffer: sorted by offset, each begins
  // where the previous one ended, and the last ends at the end of the file.
  std::stable_sort(f.tensors_.begin(), f.tensors_.end(), [](const SafetensorInfo& a, const SafetensorInfo& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  uint64_t covered = 0;
  const SafetensorInfo* prev = nullptr;
  for (const SafetensorInfo& t : f.tensors_) {
    if (t.offset < covered)
      throw_error("%s: tensor '%s' (bytes [%" PRIu64 ", %" PRIu64 ")) overlaps tensor '%s' (bytes [%" PRIu64
                  ", %" PRIu64 "))",
                  path, t.name.c_str(), t.offset, t.offset + t.nbytes, prev->name.c_str(), prev->offset, covered);
    if (t.offset > covered)
      throw_error("%s: tensor '%s' begins at byte %" PRIu64 " of the data buffer, expected %" PRIu64
                  " (a hole of %" PRIu64 " bytes after %s)",
                  path, t.name.c_str(), t.offset, covered, t.offset - covered,
                  prev ? ("tensor '" + prev->name + "'").c_str() : "the header");
    covered = t.offset + t.nbytes;
    prev = &t;
  }
  if (covered != buffer_size)
    throw_error("%s: tensors cover %" PRIu64 " bytes of the %" PRIu64 "-byte data buffer; %" PRIu64
                " trailing bytes belong to no tensor",
                path, covered, buffer_size, buffer_size - covered);

  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto m = std::make_shared<const MappedFile>(path);
  SafetensorsFile f = parse(m->data(), m->size(), path);
  f.mapping_ = std::move(m);
  return f;
}

const SafetensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---- a checkpoint directory ---------------------------------------------------------

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& dir) {
  namespace fs = std::filesystem;
  SafetensorsCheckpoint c;
  c.dir_ = dir;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  std::error_code ec;

  if (!fs::exists(index_path, ec)) {
    if (!fs::exists(single_path, ec))
      throw_error("%s: no model.safetensors or model.safetensors.index.json in this directory", dir.c_str());
    c.shards_.push_back(SafetensorsFile::open(single_path.string()));
    for (const SafetensorInfo& t : c.shards_[0].tensors()) {
      c.names_.push_back(t.name);
      c.by_name_.emplace(t.name, &t);
    }
    return c;
  }

  // The index: {"metadata": {...}, "weight_map": {"name": "shard file", ...}}.
  const std::string ip = index_path.string();
  const char* ipc = ip.c_str();
  std::vector<uint8_t> text;
  {
    MappedFile m(ip);
    if (m.size() > SafetensorsFile::kMaxHeaderBytes)
      throw_error("%s: %zu bytes, larger than the limit of %" PRIu64, ipc, m.size(), SafetensorsFile::kMaxHeaderBytes);
    text.assign(m.data(), m.data() + m.size());
  }
  const OrderedJson index = parse_json_strict<OrderedJson>(reinterpret_cast<const char*>(text.data()), text.size(), ip);
  if (!index.is_object()) throw_error("%s: a JSON %s, expected an object", ipc, index.type_name());
  if (index.contains("metadata") && index["metadata"].is_object())
    for (const auto& [k, v] : index["metadata"].items()) c.index_metadata_.emplace(k, v.dump());
  if (!index.contains("weight_map") || !index["weight_map"].is_object())
    throw_error("%s: \"weight_map\" is missing or not an object", ipc);

  std::vector<std::string> shard_names;                  // in order of first mention
  std::map<std::string, std::vector<std::string>> held;  // shard -> tensor names
  std::map<std::string, std::string> shard_of;           // tensor -> shard
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string())
      throw_error("%s: weight_map['%s'] is a JSON %s, expected a file name", ipc, name.c_str(), file.type_name());
    const std::string& s = file.get_ref<const std::string&>();
    const fs::path sp(s);
    bool bad = s.empty() || sp.is_absolute();
    for (const auto& part : sp) bad = bad || part == "..";
    if (bad) throw_error("%s: weight_map['%s'] is '%s', expected a file name inside the checkpoint", ipc, name.c_str(), s.c_str());
    if (!held.count(s)) shard_names.push_back(s);
    held[s].push_back(name);
    shard_of.emplace(name, s);
    c.names_.push_back(name);
  }

  for (const std::string& s : shard_names) {
    const fs::path sp = fs::path(dir) / s;
    if (!fs::exists(sp, ec)) {
      const auto& names = held[s];
      std::string some;
      for (size_t i = 0; i < names.size() && i < 3; ++i) some += (i ? ", " : "") + names[i];
      if (names.size() > 3) some += ", ...";
      throw_error("%s: shard '%s' is missing; the index lists %zu tensors in it (%s)", dir.c_str(), s.c_str(),
                  names.size(), some.c_str());
    }
    c.shards_.push_back(SafetensorsFile::open(sp.string()));
  }

  // Every tensor of every shard is where the index says, and only there.
  std::map<std::string, std::string, std::less<>> found_in;
  for (size_t i = 0; i < c.shards_.size(); ++i) {
    const std::string& s = shard_names[i];
    for (const SafetensorInfo& t : c.shards_[i].tensors()) {
      if (const auto it = found_in.find(t.name); it != found_in.end())
        throw_error("%s: tensor '%s' is in two shards, '%s' and '%s'", dir.c_str(), t.name.c_str(), it->second.c_str(),
                    s.c_str());
      found_in.emplace(t.name, s);
      const auto listed = shard_of.find(t.name);
      if (listed == shard_of.end())
        throw_error("%s: tensor '%s' is in shard '%s' but not in the index's weight_map", dir.c_str(), t.name.c_str(),
                    s.c_str());
      if (listed->second != s)
        throw_error("%s: tensor '%s' is in shard '%s', but the index lists it in '%s'", dir.c_str(), t.name.c_str(),
                    s.c_str(), listed->second.c_str());
      c.by_name_.emplace(t.name, &t);
    }
  }
  for (const std::string& name : c.names_)
    if (!c.by_name_.count(name))
      throw_error("%s: tensor '%s' is listed in the index in shard '%s' but that shard does not hold it", dir.c_str(),
                  name.c_str(), shard_of[name].c_str());
  return c;
}

const SafetensorInfo* SafetensorsCheckpoint::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const SafetensorInfo& SafetensorsCheckpoint::tensor(std::string_view name) const {
  const SafetensorInfo* t = find(name);
  if (t == nullptr) throw_error("%s: tensor '%.*s' is missing", dir_.c_str(), static_cast<int>(name.size()), name.data());
  return *t;
}

const SafetensorInfo* SafetensorsCheckpoint::find_scale_inv(std::string_view name) const {
  return find(std::string(name) + "_scale_inv");
}

// ---- conversion to float32 ------------------------------------------------------------

namespace {

// Element i of a float tensor (F32, F16, BF16, FP8), from unaligned bytes.
float element_f32(const SafetensorInfo& t, uint64_t i) {
  const uint8_t* p = t.data;
  switch (t.dtype) {
    case SafetensorsDtype::F32: {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      return v;
    }
    case SafetensorsDtype::F16:
    case SafetensorsDtype::BF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return t.dtype == SafetensorsDtype::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
    }
    case SafetensorsDtype::F8_E4M3: return fp8_e4m3_to_f32(p[i]);
    case SafetensorsDtype::F8_E5M2: return fp8_e5m2_to_f32(p[i]);
    case SafetensorsDtype::F8_E8M0: return e8m0_to_f32(p[i]);
    default: return 0.0f;
  }
}

bool is_float_dtype(SafetensorsDtype d) {
  return d == SafetensorsDtype::F32 || d == SafetensorsDtype::F16 || d == SafetensorsDtype::BF16 ||
         d == SafetensorsDtype::F8_E4M3 || d == SafetensorsDtype::F8_E5M2;
}

}  // namespace

std::vector<float> tensor_to_f32(const SafetensorInfo& t, const SafetensorInfo* scale_inv, int64_t block_rows,
                                 int64_t block_cols) {
  const char* file = t.file.c_str();
  const char* tn = t.name.c_str();
  if (!is_float_dtype(t.dtype))
    throw_error("%s: tensor '%s': cannot convert %s to float32 (expected F32, F16, BF16, F8_E4M3 or F8_E5M2)", file, tn,
                safetensors_dtype_name(t.dtype));
  MOE_ASSERT(t.nbytes == static_cast<uint64_t>(t.n_elements) * safetensors_dtype_size(t.dtype),
             "%s: tensor '%s': %" PRIu64 " bytes for %" PRId64 " elements", file, tn, t.nbytes, t.n_elements);
  const bool fp8 = t.dtype == SafetensorsDtype::F8_E4M3 || t.dtype == SafetensorsDtype::F8_E5M2;
  const uint64_t n = static_cast<uint64_t>(t.n_elements);
  std::vector<float> out(n);
  if (!fp8) {
    if (scale_inv != nullptr)
      throw_error("%s: tensor '%s' is %s, but a scale_inv ('%s') was given: only FP8 weights have block scales", file,
                  tn, safetensors_dtype_name(t.dtype), scale_inv->name.c_str());
    if (t.dtype == SafetensorsDtype::F32) {
      if (n) std::memcpy(out.data(), t.data, n * 4);
    } else {
      for (uint64_t i = 0; i < n; ++i) out[i] = element_f32(t, i);
    }
    return out;
  }

  // FP8 with DeepSeek's block scales.
  if (scale_inv == nullptr)
    throw_error("%s: tensor '%s' is %s and needs its block scales ('%s_scale_inv'), none given", file, tn,
                safetensors_dtype_name(t.dtype), tn);
  const char* sn = scale_inv->name.c_str();
  if (t.shape.size() != 2)
    throw_error("%s: tensor '%s': FP8 block scales need a 2-D weight, found shape %s", file, tn, t.shape_string().c_str());
  MOE_ASSERT(block_rows > 0 && block_cols > 0, "FP8 block size %" PRId64 "x%" PRId64 " must be positive", block_rows,
             block_cols);
  if (!(is_float_dtype(scale_inv->dtype) || scale_inv->dtype == SafetensorsDtype::F8_E8M0) ||
      scale_inv->dtype == SafetensorsDtype::F8_E4M3 || scale_inv->dtype == SafetensorsDtype::F8_E5M2)
    throw_error("%s: scale '%s' of tensor '%s' is %s, expected F32, BF16, F16 or F8_E8M0", scale_inv->file.c_str(), sn, tn,
                safetensors_dtype_name(scale_inv->dtype));
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const int64_t srows = (rows + block_rows - 1) / block_rows, scols = (cols + block_cols - 1) / block_cols;
  if (scale_inv->shape != std::vector<int64_t>{srows, scols})
    throw_error("%s: scale '%s' of tensor '%s' %s: expected shape [%" PRId64 ", %" PRId64 "] (one per %" PRId64
                "x%" PRId64 " block), found %s",
                scale_inv->file.c_str(), sn, tn, t.shape_string().c_str(), srows, scols, block_rows, block_cols,
                scale_inv->shape_string().c_str());
  std::vector<float> scale(static_cast<size_t>(srows * scols));
  for (size_t i = 0; i < scale.size(); ++i) scale[i] = element_f32(*scale_inv, i);
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = scale.data() + (r / block_rows) * scols;
    float* o = out.data() + r * cols;
    const uint8_t* q = t.data + r * cols;
    if (t.dtype == SafetensorsDtype::F8_E4M3) {
      for (int64_t c = 0; c < cols; ++c) o[c] = fp8_e4m3_to_f32(q[c]) * srow[c / block_cols];
    } else {
      for (int64_t c = 0; c < cols; ++c) o[c] = fp8_e5m2_to_f32(q[c]) * srow[c / block_cols];
    }
  }
  return out;
}

}  // namespace moe
