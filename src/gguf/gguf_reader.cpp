#include "gguf/gguf_reader.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <limits>

#include "core/mapped_file.h"

namespace moe {

// Sequential, bounds-checked parser. Every read checks the bytes left first;
// every count is checked against the bytes left (times the smallest size one
// element can take) before anything is reserved for it.
class GgufParser {
 public:
  GgufParser(GgufFile& f) : f_(f), p_(f.base_), size_(f.size_) {}

  void parse();

 private:
  static constexpr int kMaxArrayDepth = 8;
  // Limits on what a header may make us allocate, whatever the file size
  // (a sparse file can be terabytes of zeros). Real files are far below:
  // DeepSeek-V3 has ~1,200 tensors, 129,280 tokens, ~50 keys.
  static constexpr uint64_t kMaxTensors = 1u << 20;
  static constexpr uint64_t kMaxKv = 1u << 20;
  static constexpr uint64_t kMaxArrayItems = 1u << 24;  // strings or nested arrays in one array
  static constexpr uint64_t kMaxArrayBytes = 1ull << 30;

  [[noreturn]] void fail(uint64_t at, const std::string& field, const std::string& msg) const {
    throw GgufError(strfmt("%s: at offset %" PRIu64 " (0x%" PRIx64 "), %s: %s", f_.path_.c_str(), at, at,
                           field.c_str(), msg.c_str()));
  }
  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, const std::string& field) const {
    if (n > left())
      fail(pos_, field,
           strfmt("file truncated: %" PRIu64 " bytes needed, %" PRIu64 " left of %" PRIu64, n, left(), size_));
  }
  template <typename T>
  T read(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // index >= 0 names element `index` of an array `field`; the name is only
  // built when there is an error to report (vocabularies have 100k+ strings).
  std::string read_string(const std::string& field, int64_t index = -1) {
    const uint64_t at = pos_;
    auto name = [&] { return index < 0 ? field : strfmt("%s[%" PRId64 "]", field.c_str(), index); };
    if (8 > left()) need(8, name() + " length");
    uint64_t len;
    std::memcpy(&len, p_ + pos_, 8);
    pos_ += 8;
    if (len > left())
      fail(at, name(), strfmt("string length %" PRIu64 " exceeds the %" PRIu64 " bytes left in the file", len, left()));
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }
  GgufType read_type(const std::string& field) {
    const uint64_t at = pos_;
    const uint32_t t = read<uint32_t>(field);
    if (t >= kGgufTypeCount) fail(at, field, strfmt("unknown value type %" PRIu32, t));
    return static_cast<GgufType>(t);
  }
  GgufValue read_value(GgufType type, const std::string& field, int depth);
  GgufValue read_array(const std::string& field, int depth);
  void read_kv(uint64_t i);
  void read_tensor_info(uint64_t i);
  void place_tensors();

  GgufFile& f_;
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t alignment_at_ = 0;  // where general.alignment's value is, for errors
};

GgufValue GgufParser::read_value(GgufType type, const std::string& field, int depth) {
  switch (type) {
    case GgufType::UINT8: return GgufValue::u8(read<uint8_t>(field));
    case GgufType::INT8: return GgufValue::i8(read<int8_t>(field));
    case GgufType::UINT16: return GgufValue::u16(read<uint16_t>(field));
    case GgufType::INT16: return GgufValue::i16(read<int16_t>(field));
    case GgufType::UINT32: return GgufValue::u32(read<uint32_t>(field));
    case GgufType::INT32: return GgufValue::i32(read<int32_t>(field));
    case GgufType::UINT64: return GgufValue::u64(read<uint64_t>(field));
    case GgufType::INT64: return GgufValue::i64(read<int64_t>(field));
    case GgufType::FLOAT32: return GgufValue::f32(read<float>(field));
    case GgufType::FLOAT64: return GgufValue::f64(read<double>(field));
    case GgufType::BOOL: {
      const uint64_t at = pos_;
      const uint8_t b = read<uint8_t>(field);
      if (b > 1) fail(at, field, strfmt("bool value %u is neither 0 nor 1", static_cast<unsigned>(b)));
      return GgufValue::boolean(b != 0);
    }
    case GgufType::STRING: return GgufValue::string(read_string(field));
    case GgufType::ARRAY: return read_array(field, depth + 1);
  }
  fail(pos_, field, "unknown value type");
}

GgufValue GgufParser::read_array(const std::string& field, int depth) {
  const uint64_t at = pos_;
  if (depth > kMaxArrayDepth) fail(at, field, strfmt("arrays nested deeper than %d levels", kMaxArrayDepth));
  const GgufType elem = read_type(field + " element type");
  const uint64_t count_at = pos_;
  const uint64_t count = read<uint64_t>(field + " element count");
  // The least each element can occupy: its size, a string's length field,
  // or a nested array's type and count.
  const uint64_t min_elem = elem == GgufType::STRING ? 8 : elem == GgufType::ARRAY ? 12 : gguf_scalar_size(elem);
  if (count > left() / min_elem)
    fail(count_at, field,
         strfmt("array of %" PRIu64 " %s values cannot fit in the %" PRIu64 " bytes left in the file", count,
                gguf_type_name(elem), left()));
  if ((elem == GgufType::STRING || elem == GgufType::ARRAY) && count > kMaxArrayItems)
    fail(count_at, field,
         strfmt("array of %" PRIu64 " %s values exceeds the limit of %" PRIu64, count, gguf_type_name(elem),
                kMaxArrayItems));
  if (count * min_elem > kMaxArrayBytes)
    fail(count_at, field,
         strfmt("array of %" PRIu64 " %s values is larger than the limit of %" PRIu64 " bytes", count,
                gguf_type_name(elem), kMaxArrayBytes));
  if (elem == GgufType::STRING) {
    std::vector<std::string> v;
    v.reserve(static_cast<size_t>(std::min<uint64_t>(count, 1u << 16)));
    for (uint64_t i = 0; i < count; ++i) v.push_back(read_string(field, static_cast<int64_t>(i)));
    return GgufValue::array_of_strings(std::move(v));
  }
  if (elem == GgufType::ARRAY) {
    std::vector<GgufValue> v;
    v.reserve(static_cast<size_t>(std::min<uint64_t>(count, 1u << 10)));
    for (uint64_t i = 0; i < count; ++i) v.push_back(read_array(strfmt("%s[%" PRIu64 "]", field.c_str(), i), depth + 1));
    return GgufValue::array_of_arrays(std::move(v));
  }
  const uint64_t nbytes = count * min_elem;  // cannot overflow: count <= left / min_elem
  if (elem == GgufType::BOOL) {
    for (uint64_t i = 0; i < count; ++i)
      if (p_[pos_ + i] > 1) fail(pos_ + i, strfmt("%s[%" PRIu64 "]", field.c_str(), i), "bool value is neither 0 nor 1");
  }
  std::vector<uint8_t> bytes(p_ + pos_, p_ + pos_ + nbytes);
  pos_ += nbytes;
  return GgufValue::array_raw(elem, count, std::move(bytes));
}

void GgufParser::read_kv(uint64_t i) {
  const uint64_t at = pos_;
  std::string key = read_string(strfmt("metadata entry %" PRIu64 " key", i));
  if (key.empty()) fail(at, strfmt("metadata entry %" PRIu64 " key", i), "empty key");
  if (f_.kv_index_.count(key)) fail(at, "metadata key '" + key + "'", "duplicate key");
  const GgufType type = read_type("metadata key '" + key + "' value type");
  if (key == "general.alignment") alignment_at_ = pos_;
  GgufValue value = read_value(type, "metadata key '" + key + "'", 0);
  f_.kv_index_.emplace(key, f_.kv_.size());
  f_.kv_.push_back({std::move(key), std::move(value)});
}

void GgufParser::read_tensor_info(uint64_t i) {
  const uint64_t at = pos_;
  GgufTensorInfo t;
  t.name = read_string(strfmt("tensor %" PRIu64 " name", i));
  const std::string field = strfmt("tensor %" PRIu64 " ('%s')", i, t.name.c_str());
  if (t.name.empty()) fail(at, field, "empty tensor name");
  if (f_.tensor_index_.count(t.name)) fail(at, field, "duplicate tensor name");
  const uint64_t dims_at = pos_;
  const uint32_t n_dims = read<uint32_t>(field + " n_dims");
  if (n_dims == 0 || n_dims > kGgufMaxDims)
    fail(dims_at, field, strfmt("n_dims is %" PRIu32 ", expected 1..%d", n_dims, kGgufMaxDims));
  // The product of the non-zero dimensions must fit in int64, not only the
  // element count (0 once any dimension is 0): it bounds every partial
  // product, such as n_rows() of a tensor with empty rows.
  int64_t n = 1, n_nonzero = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t ne_at = pos_;
    const uint64_t ne = read<uint64_t>(strfmt("%s dimension %u", field.c_str(), d));
    if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(ne_at, field, strfmt("dimension %u is %" PRIu64 ", too large", d, ne));
    const int64_t ne_s = static_cast<int64_t>(ne);
    if (ne_s != 0 && n_nonzero > std::numeric_limits<int64_t>::max() / ne_s)
      fail(ne_at, field, strfmt("element count overflows at dimension %u (%" PRIu64 ")", d, ne));
    if (ne_s != 0) n_nonzero *= ne_s;
    n *= ne_s;
    t.shape.push_back(ne_s);
  }
  t.n_elements = n;
  const uint64_t type_at = pos_;
  const uint32_t type_id = read<uint32_t>(field + " type");
  const GgmlTypeTraits* tt = ggml_type_traits(type_id);
  if (tt == nullptr) fail(type_at, field, strfmt("unknown tensor type id %" PRIu32, type_id));
  t.type = static_cast<GgmlType>(type_id);
  if (t.shape[0] % tt->block_size != 0)
    fail(dims_at, field,
         strfmt("row length %" PRId64 " is not a multiple of the %s block size %" PRId64, t.shape[0], tt->name,
                tt->block_size));
  // nbytes = n / block_size * type_size; n < 2^63, type_size <= 292: check the product.
  const uint64_t n_blocks = static_cast<uint64_t>(n / tt->block_size);
  if (n_blocks > std::numeric_limits<uint64_t>::max() / tt->type_size)
    fail(dims_at, field, "tensor size in bytes overflows");
  t.nbytes = n_blocks * tt->type_size;
  const uint64_t off_at = pos_;
  t.offset = read<uint64_t>(field + " offset");
  if (t.offset % f_.alignment_ != 0)
    fail(off_at, field, strfmt("data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32, t.offset,
                               f_.alignment_));
  f_.tensor_index_.emplace(t.name, f_.tensors_.size());
  f_.tensors_.push_back(std::move(t));
}

// Tensor data must lie inside the file, after the header, without overlap.
void GgufParser::place_tensors() {
  const uint64_t a = f_.alignment_;
  const uint64_t header_end = pos_;
  if (header_end > size_) fail(header_end, "data section", "header runs past the end of the file");
  const uint64_t pad = (a - header_end % a) % a;
  f_.data_offset_ = header_end + pad;
  if (f_.tensors_.empty()) return;  // vocab-only files may end right after the header
  if (f_.data_offset_ > size_)
    fail(header_end, "data section", strfmt("padding to alignment %" PRIu64 " runs past the end of the file", a));
  const uint64_t data_size = size_ - f_.data_offset_;
  std::vector<size_t> order(f_.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t x, size_t y) { return f_.tensors_[x].offset < f_.tensors_[y].offset; });
  uint64_t prev_end = 0;
  const GgufTensorInfo* prev = nullptr;
  for (size_t idx : order) {
    GgufTensorInfo& t = f_.tensors_[idx];
    const std::string field = strfmt("tensor %zu ('%s')", idx, t.name.c_str());
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail(f_.data_offset_ + std::min(t.offset, data_size), field,
           strfmt("data [%" PRIu64 ", +%" PRIu64 ") lies outside the data section (%" PRIu64 " bytes)", t.offset,
                  t.nbytes, data_size));
    if (prev != nullptr && t.offset < prev_end)
      fail(f_.data_offset_ + t.offset, field,
           strfmt("data at offset %" PRIu64 " overlaps tensor '%s' ending at %" PRIu64, t.offset, prev->name.c_str(),
                  prev_end));
    t.data = p_ + f_.data_offset_ + t.offset;
    prev_end = t.offset + t.nbytes;
    prev = &t;
  }
}

void GgufParser::parse() {
  if (size_ < 4) fail(0, "magic", strfmt("file is %" PRIu64 " bytes, too small to be GGUF", size_));
  const uint32_t magic = read<uint32_t>("magic");
  if (magic != kGgufMagic)
    fail(0, "magic", strfmt("not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")", p_[0], p_[1], p_[2], p_[3]));
  const uint32_t version = read<uint32_t>("version");
  if (version == 1) fail(4, "version", "GGUF version 1 (32-bit counts) is not supported; re-convert the file");
  if (version != 2 && version != 3) {
    if ((version & 0xffff) == 0 && (version >> 16) != 0)
      fail(4, "version", strfmt("version %" PRIu32 " looks byte-swapped: big-endian GGUF files are not supported", version));
    fail(4, "version", strfmt("unsupported GGUF version %" PRIu32 " (expected 2 or 3)", version));
  }
  f_.version_ = version;
  const uint64_t n_tensors = read<uint64_t>("tensor count");
  const uint64_t n_kv = read<uint64_t>("metadata count");
  // Smallest possible entries: a tensor info is name length 8 + n_dims 4 +
  // one dim 8 + type 4 + offset 8; a metadata entry is key length 8 + type 4 + 1.
  if (n_tensors > left() / 32)
    fail(8, "tensor count", strfmt("%" PRIu64 " tensors cannot fit in a %" PRIu64 "-byte file", n_tensors, size_));
  if (n_kv > left() / 13)
    fail(16, "metadata count", strfmt("%" PRIu64 " metadata entries cannot fit in a %" PRIu64 "-byte file", n_kv, size_));
  if (n_tensors > kMaxTensors)
    fail(8, "tensor count", strfmt("%" PRIu64 " tensors exceed the limit of %" PRIu64, n_tensors, kMaxTensors));
  if (n_kv > kMaxKv)
    fail(16, "metadata count", strfmt("%" PRIu64 " metadata entries exceed the limit of %" PRIu64, n_kv, kMaxKv));
  f_.kv_.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv, 4096)));
  for (uint64_t i = 0; i < n_kv; ++i) read_kv(i);

  if (const GgufValue* a = f_.find("general.alignment")) {
    if (a->type() != GgufType::UINT32)
      fail(alignment_at_, "metadata key 'general.alignment'",
           strfmt("expected uint32, found %s", gguf_type_name(a->type())));
    const uint64_t v = a->as_u64();
    if (v == 0 || (v & (v - 1)) != 0)
      fail(alignment_at_, "metadata key 'general.alignment'", strfmt("%" PRIu64 " is not a power of two", v));
    f_.alignment_ = static_cast<uint32_t>(v);
  }
  f_.tensors_.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors, 1u << 16)));
  for (uint64_t i = 0; i < n_tensors; ++i) read_tensor_info(i);
  place_tensors();
}

GgufFile GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  GgufFile f;
  f.path_ = name;
  f.base_ = data;
  f.size_ = size;
  try {
    GgufParser(f).parse();
  } catch (const std::bad_alloc&) {
    throw GgufError(name + ": out of memory while reading the GGUF header (metadata or tensor list too large)");
  }
  f.shards_.push_back({f.path_, f.base_, f.size_, f.data_offset_, f.tensors_.size()});
  return f;
}

GgufFile GgufFile::open(const std::string& path, bool map, bool whole_set) {
  auto m = std::make_shared<const MappedFile>(path, map);
  GgufFile f = parse(m->data(), m->size(), path);
  f.mapping_ = std::move(m);
  if (!f.has("split.count")) return f;
  if (whole_set) f.open_split_set(map);
  else f.split_member_ = f.get_u64_opt("split.no").value_or(0) > 0;
  return f;
}

uint64_t GgufFile::total_size() const {
  uint64_t n = 0;
  for (const GgufShard& s : shards_) n += s.size;
  return n;
}

std::vector<const MappedFile*> GgufFile::mappings() const {
  std::vector<const MappedFile*> out;
  if (mapping_) out.push_back(mapping_.get());
  for (const auto& m : shard_mappings_) out.push_back(m.get());
  return out;
}

std::string GgufTensorInfo::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += strfmt(i ? ", %" PRId64 : "%" PRId64, shape[i]);
  return s + "]";
}

// ---- metadata getters ------------------------------------------------------------

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

const GgufValue& GgufFile::require(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr)
    throw GgufError(strfmt("%s: metadata key '%.*s' is missing", path_.c_str(), static_cast<int>(key.size()), key.data()));
  return *v;
}

void GgufFile::type_error(std::string_view key, const char* expected, const GgufValue& v) const {
  std::string found = gguf_type_name(v.type());
  if (v.is_array()) found = strfmt("array of %s", gguf_type_name(v.array_type()));
  throw GgufError(strfmt("%s: metadata key '%.*s': expected %s, found %s (%s)", path_.c_str(),
                         static_cast<int>(key.size()), key.data(), expected, found.c_str(), v.to_string(4).c_str()));
}

namespace {
// An integer scalar or array element widened so that every GGUF integer type
// (uint64 included) compares exactly against any range; nullopt if not an integer.
std::optional<__int128> integer_of(const GgufValue& v) {
  if (!v.is_integer()) return std::nullopt;
  if (v.type() == GgufType::UINT64) return static_cast<__int128>(v.as_u64());
  return static_cast<__int128>(v.as_i64());
}

std::optional<__int128> integer_element(const GgufValue& v, uint64_t i) {
  switch (v.array_type()) {
    case GgufType::UINT64: {
      uint64_t u;
      std::memcpy(&u, v.raw().data() + i * 8, 8);
      return static_cast<__int128>(u);
    }
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::INT64:
      return static_cast<__int128>(v.int_at(i));
    default: return std::nullopt;
  }
}

template <typename T>
bool fits(std::optional<__int128> x) {
  return x && *x >= static_cast<__int128>(std::numeric_limits<T>::min()) &&
         *x <= static_cast<__int128>(std::numeric_limits<T>::max());
}
}  // namespace

uint32_t GgufFile::get_u32(std::string_view key) const {
  const GgufValue& v = require(key);
  const auto x = integer_of(v);
  if (!fits<uint32_t>(x)) type_error(key, "uint32", v);
  return static_cast<uint32_t>(*x);
}

int32_t GgufFile::get_i32(std::string_view key) const {
  const GgufValue& v = require(key);
  const auto x = integer_of(v);
  if (!fits<int32_t>(x)) type_error(key, "int32", v);
  return static_cast<int32_t>(*x);
}

uint64_t GgufFile::get_u64(std::string_view key) const {
  const GgufValue& v = require(key);
  const auto x = integer_of(v);
  if (!fits<uint64_t>(x)) type_error(key, "uint64", v);
  return static_cast<uint64_t>(*x);
}

float GgufFile::get_f32(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type() != GgufType::FLOAT32 && v.type() != GgufType::FLOAT64) type_error(key, "float32", v);
  return static_cast<float>(v.as_f64());
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type() != GgufType::BOOL) type_error(key, "bool", v);
  return v.as_bool();
}

const std::string& GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = require(key);
  if (v.type() != GgufType::STRING) type_error(key, "string", v);
  return v.as_string();
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = require(key);
  if (!v.is_array() || v.array_type() != GgufType::STRING) type_error(key, "array of string", v);
  return v.strings();
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const GgufValue& v = require(key);
  if (!v.is_array() || (v.array_type() != GgufType::FLOAT32 && v.array_type() != GgufType::FLOAT64))
    type_error(key, "array of float32", v);
  std::vector<float> out(static_cast<size_t>(v.array_size()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(v.float_at(i));
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(std::string_view key) const {
  const GgufValue& v = require(key);
  if (!v.is_array()) type_error(key, "array of int32", v);
  std::vector<int32_t> out(static_cast<size_t>(v.array_size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const auto x = integer_element(v, i);
    if (!fits<int32_t>(x)) type_error(key, "array of int32", v);
    out[i] = static_cast<int32_t>(*x);
  }
  return out;
}

std::optional<uint32_t> GgufFile::get_u32_opt(std::string_view key) const {
  return has(key) ? std::optional<uint32_t>(get_u32(key)) : std::nullopt;
}
std::optional<int32_t> GgufFile::get_i32_opt(std::string_view key) const {
  return has(key) ? std::optional<int32_t>(get_i32(key)) : std::nullopt;
}
std::optional<uint64_t> GgufFile::get_u64_opt(std::string_view key) const {
  return has(key) ? std::optional<uint64_t>(get_u64(key)) : std::nullopt;
}
std::optional<float> GgufFile::get_f32_opt(std::string_view key) const {
  return has(key) ? std::optional<float>(get_f32(key)) : std::nullopt;
}
std::optional<bool> GgufFile::get_bool_opt(std::string_view key) const {
  return has(key) ? std::optional<bool>(get_bool(key)) : std::nullopt;
}
std::optional<std::string> GgufFile::get_string_opt(std::string_view key) const {
  return has(key) ? std::optional<std::string>(get_string(key)) : std::nullopt;
}

// ---- tensors ---------------------------------------------------------------------

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (t == nullptr)
    throw GgufError(strfmt("%s: tensor '%.*s' is missing", path_.c_str(), static_cast<int>(name.size()), name.data()));
  return *t;
}

}  // namespace moe
