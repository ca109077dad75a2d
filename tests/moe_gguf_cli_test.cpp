// moe-gguf, the GGUF inspector, checked from the outside.
//
// Its JSON must agree with an independent GGUF walker written here (a plain
// sequential parse from the format description, no src/gguf). Corrupted
// copies of a real file (truncated at every section boundary, single bytes
// flipped, counts and sizes inflated) must give exit code 1 and a message
// naming the file and the offset, never a signal. The same corruptions go
// to the reader in-process too, where they are cheap enough to try at every
// byte of the header: a sanitizer build catches any read past the end there.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using moe::test::CommandResult;

constexpr bool kSanitized = moe::test::kAddressSanitizer;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- an independent GGUF walker -----------------------------------------------------
// From the GGUF description (ggml docs/gguf.md): u32 magic, u32 version, u64
// n_tensors, u64 n_kv; n_kv x {string key, u32 type, value}; n_tensors x
// {string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset}; padding to
// general.alignment (32); data. string = u64 length + bytes; array = u32
// element type + u64 count + elements. Only valid files are walked.

constexpr uint32_t kString = 8, kArray = 9;
constexpr uint64_t kKeepElements = 16;
constexpr size_t kScalarSize[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
constexpr const char* kTypeName[13] = {"uint8",  "int8",   "uint16", "int16", "uint32", "int32", "float32",
                                       "bool",   "string", "array",  "uint64", "int64", "float64"};
constexpr bool kSigned[13] = {false, true, false, true, false, true, false, false, false, false, false, true, false};
constexpr bool kFloat[13] = {false, false, false, false, false, false, true, false, false, false, false, false, true};

// A fixed-size scalar at p as a double (integers and bools exactly, when small).
double scalar_double(uint32_t type, const uint8_t* p) {
  uint64_t u = 0;
  std::memcpy(&u, p, kScalarSize[type]);
  if (type == 6) { float f; std::memcpy(&f, p, 4); return f; }
  if (type == 12) { double d; std::memcpy(&d, p, 8); return d; }
  if (kSigned[type]) {
    const int bits = static_cast<int>(8 * kScalarSize[type]);
    const int64_t s = bits == 64 ? static_cast<int64_t>(u) : static_cast<int64_t>(u << (64 - bits)) >> (64 - bits);
    return static_cast<double>(s);
  }
  return static_cast<double>(u);
}

struct WalkKv {
  std::string key;
  uint32_t type = 0;
  size_t at = 0, value_at = 0, end = 0;  // entry start, value start, entry end
  std::string str;                       // a string value, or an array's first string
  std::string last_str;                  // an array's last string
  double num = 0, last_num = 0;          // a scalar value, or a scalar array's first and last
  uint32_t elem_type = 0;                // arrays
  uint64_t count = 0;
  size_t prefix_end = 0;                 // arrays: end of the first kKeepElements elements
};

struct WalkTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;
  uint64_t offset = 0;
  size_t at = 0, n_dims_at = 0, dims_at = 0, type_at = 0, offset_at = 0;
};

struct Walk {
  uint32_t version = 0;
  uint64_t n_tensors = 0, n_kv = 0;
  std::vector<WalkKv> kv;
  std::vector<WalkTensor> tensors;
  uint64_t alignment = 32;
  size_t header_end = 0, data_start = 0;
  std::vector<size_t> cuts;                            // section boundaries, for truncation
  std::vector<std::pair<size_t, size_t>> structure;    // [from, to): header bytes outside array payloads

  const WalkKv* find(const std::string& key) const {
    for (const WalkKv& k : kv)
      if (k.key == key) return &k;
    return nullptr;
  }
};

class Walker {
 public:
  explicit Walker(const std::vector<uint8_t>& b) : b_(b) {}

  Walk run() {
    cut();
    if (get<uint32_t>() != 0x46554747) throw std::runtime_error("walker: bad magic");
    cut();
    w_.version = get<uint32_t>();
    cut();
    w_.n_tensors = get<uint64_t>();
    cut();
    w_.n_kv = get<uint64_t>();
    cut();
    w_.structure.emplace_back(0, p_);
    for (uint64_t i = 0; i < w_.n_kv; ++i) read_kv();
    for (uint64_t i = 0; i < w_.n_tensors; ++i) read_tensor();
    w_.header_end = p_;
    if (const WalkKv* a = w_.find("general.alignment"); a && a->type == 4) w_.alignment = static_cast<uint64_t>(a->num);
    w_.data_start = (p_ + w_.alignment - 1) / w_.alignment * w_.alignment;
    return std::move(w_);
  }

 private:
  template <typename T>
  T get() {
    if (sizeof(T) > b_.size() - p_) throw std::runtime_error("walker: truncated at " + std::to_string(p_));
    T v;
    std::memcpy(&v, b_.data() + p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  void cut() {
    if (mark_) w_.cuts.push_back(p_);
  }
  std::string str() {
    const uint64_t n = get<uint64_t>();
    cut();
    if (n > b_.size() - p_) throw std::runtime_error("walker: string too long at " + std::to_string(p_));
    if (mark_ && n > 1) w_.cuts.push_back(p_ + n / 2);
    std::string s(reinterpret_cast<const char*>(b_.data()) + p_, n);
    p_ += n;
    cut();
    return s;
  }
  void skip_scalar(uint32_t type) {
    if (type >= 13 || kScalarSize[type] == 0) throw std::runtime_error("walker: bad type " + std::to_string(type));
    if (kScalarSize[type] > b_.size() - p_) throw std::runtime_error("walker: truncated value");
    p_ += kScalarSize[type];
    cut();
  }
  // A value inside an array: strings and nested arrays are walked, not kept.
  void skip_value(uint32_t type, int depth) {
    if (type == kString) {
      str();
    } else if (type == kArray) {
      if (depth > 16) throw std::runtime_error("walker: arrays nested too deep");
      const uint32_t elem = get<uint32_t>();
      const uint64_t count = get<uint64_t>();
      for (uint64_t i = 0; i < count; ++i) skip_value(elem, depth + 1);
    } else {
      skip_scalar(type);
    }
  }
  void read_kv() {
    WalkKv kv;
    kv.at = p_;
    kv.key = str();
    kv.type = get<uint32_t>();
    cut();
    kv.value_at = p_;
    if (kv.type == kString) {
      kv.str = str();
      w_.structure.emplace_back(kv.at, kv.value_at + 8);
    } else if (kv.type == kArray) {
      kv.elem_type = get<uint32_t>();
      cut();
      kv.count = get<uint64_t>();
      cut();
      w_.structure.emplace_back(kv.at, p_);
      for (uint64_t i = 0; i < kv.count; ++i) {
        mark_ = i < 3 || i + 1 == kv.count;  // boundaries of a few elements only
        const size_t at = p_;
        if (kv.elem_type == kString) {
          std::string s = str();
          if (i < 4) w_.structure.emplace_back(at, at + 8);  // a few length fields
          if (i == 0) kv.str = s;
          if (i + 1 == kv.count) kv.last_str = std::move(s);
        } else if (kv.elem_type == kArray) {
          skip_value(kArray, 1);
        } else {
          skip_scalar(kv.elem_type);
          const double v = scalar_double(kv.elem_type, b_.data() + at);
          if (i == 0) kv.num = v;
          if (i + 1 == kv.count) kv.last_num = v;
        }
        if (i + 1 == kKeepElements) kv.prefix_end = p_;
      }
      mark_ = true;
    } else {
      skip_scalar(kv.type);
      kv.num = scalar_double(kv.type, b_.data() + kv.value_at);
      w_.structure.emplace_back(kv.at, p_);
    }
    kv.end = p_;
    w_.kv.push_back(std::move(kv));
  }
  void read_tensor() {
    WalkTensor t;
    t.at = p_;
    t.name = str();
    t.n_dims_at = p_;
    const uint32_t n_dims = get<uint32_t>();
    cut();
    if (n_dims > 4) throw std::runtime_error("walker: n_dims " + std::to_string(n_dims));
    t.dims_at = p_;
    for (uint32_t d = 0; d < n_dims; ++d) {
      t.dims.push_back(get<uint64_t>());
      cut();
    }
    t.type_at = p_;
    t.type = get<uint32_t>();
    cut();
    t.offset_at = p_;
    t.offset = get<uint64_t>();
    cut();
    w_.structure.emplace_back(t.at, p_);
    w_.tensors.push_back(std::move(t));
  }

  const std::vector<uint8_t>& b_;
  size_t p_ = 0;
  bool mark_ = true;
  Walk w_;
};

Walk walk(const std::vector<uint8_t>& bytes) { return Walker(bytes).run(); }

uint64_t tensor_nbytes(const WalkTensor& t) {
  const moe::GgmlTypeTraits* tt = moe::ggml_type_traits(t.type);
  REQUIRE(tt != nullptr);
  uint64_t n = 1;
  for (uint64_t d : t.dims) n *= d;
  return n / static_cast<uint64_t>(tt->block_size) * tt->type_size;
}

// End of the last tensor's data: truncating anywhere before it must fail.
uint64_t data_end(const Walk& w) {
  uint64_t end = w.data_start;
  for (const WalkTensor& t : w.tensors) end = std::max(end, w.data_start + t.offset + tensor_nbytes(t));
  return end;
}

// ---- running moe-gguf ------------------------------------------------------------------

std::string moe_gguf() { return moe::test::bin_dir() + "/moe-gguf"; }

CommandResult run_tool(const std::string& path, const std::string& flag = "") {
  std::vector<std::string> argv = {moe_gguf()};
  if (!flag.empty()) argv.push_back(flag);
  argv.push_back(path);
  return moe::test::run_command(argv);
}

// moe-gguf --json against the walker: header, every key's type and value, every tensor.
void check_json_against_walk(const Json& j, const Walk& w, const std::string& path, uint64_t file_size) {
  CHECK(j.at("file") == path);
  CHECK(j.at("version") == w.version);
  CHECK(j.at("alignment") == w.alignment);
  CHECK(j.at("data_offset") == w.data_start);
  CHECK(j.at("file_size") == file_size);

  const Json& meta = j.at("metadata");
  CHECK(meta.size() == w.n_kv);
  for (const WalkKv& kv : w.kv) {
    INFO("key " << kv.key);
    REQUIRE(meta.contains(kv.key));
    const Json& e = meta.at(kv.key);
    CHECK(e.at("type") == kTypeName[kv.type]);
    const Json& v = e.at("value");
    if (kv.type == kString) {
      CHECK(v == kv.str);
    } else if (kv.type == kArray) {
      CHECK(e.at("element_type") == kTypeName[kv.elem_type]);
      CHECK(e.at("count") == kv.count);
      REQUIRE(v.is_array());
      REQUIRE(v.size() == kv.count);
      if (kv.count == 0) continue;
      if (kv.elem_type == kString) {
        CHECK(v.front() == kv.str);
        CHECK(v.back() == kv.last_str);
      } else if (kv.elem_type != kArray) {
        CHECK(v.front().get<double>() == kv.num);
        CHECK(v.back().get<double>() == kv.last_num);
      }
    } else if (kv.type == 7) {
      CHECK(v == (kv.num != 0));
    } else if (kFloat[kv.type]) {
      if (kv.num == kv.num) CHECK(v.get<double>() == kv.num);  // NaN prints as null
    } else {
      CHECK(v.get<double>() == kv.num);
    }
  }

  const Json& tensors = j.at("tensors");
  REQUIRE(tensors.size() == w.n_tensors);
  uint64_t n_params = 0, n_bytes = 0;
  for (size_t i = 0; i < w.tensors.size(); ++i) {
    const WalkTensor& t = w.tensors[i];
    const Json& jt = tensors.at(i);
    INFO("tensor " << i << " " << t.name);
    CHECK(jt.at("name") == t.name);
    CHECK(jt.at("type_id") == t.type);
    CHECK(jt.at("type") == moe::ggml_type_traits(t.type)->name);
    CHECK(jt.at("shape").get<std::vector<uint64_t>>() == t.dims);
    uint64_t n = 1;
    for (uint64_t d : t.dims) n *= d;
    CHECK(jt.at("n_elements") == n);
    CHECK(jt.at("nbytes") == tensor_nbytes(t));
    CHECK(jt.at("offset") == t.offset);
    CHECK(jt.at("file_offset") == w.data_start + t.offset);
    n_params += n;
    n_bytes += tensor_nbytes(t);
  }
  const Json& s = j.at("summary");
  const WalkKv* arch = w.find("general.architecture");
  CHECK(s.at("architecture") == (arch ? arch->str : std::string()));
  CHECK(s.at("n_params") == n_params);
  CHECK(s.at("n_bytes") == n_bytes);
  uint64_t by_type_count = 0;
  for (const auto& [name, e] : s.at("by_type").items()) by_type_count += e.at("count").get<uint64_t>();
  CHECK(by_type_count == w.n_tensors);
}

std::vector<std::string> fixture_ggufs() {
  std::vector<std::string> out;
  const std::string dir = moe::test::shared_fixtures_dir();
  if (dir.empty()) return out;
  for (const char* sub : {"models", "tokenizer"}) {
    if (!fs::is_directory(dir + "/" + sub)) continue;
    for (const auto& e : fs::directory_iterator(dir + "/" + sub))
      if (e.path().extension() == ".gguf") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The file the corruption tests start from: the shared fixture, else the committed copy.
std::string corruption_base() {
  std::string p = moe::test::shared_fixture("models/tiny-dsv3.Q4_K_M.gguf");
  if (p.empty()) p = moe::test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  return fs::exists(p) ? p : std::string();
}

// ---- corruptions -------------------------------------------------------------------------

struct Patch {
  std::string what;
  size_t at;
  std::vector<uint8_t> bytes;
  std::vector<std::string> fragments;  // what the error message must mention
};

template <typename T>
Patch patch(std::string what, size_t at, T v, std::vector<std::string> fragments) {
  std::vector<uint8_t> b(sizeof(T));
  std::memcpy(b.data(), &v, sizeof(T));
  fragments.push_back("offset");
  return {std::move(what), at, std::move(b), std::move(fragments)};
}

// Counts, lengths, dimensions, types and offsets set to values no valid file can have.
std::vector<Patch> inflations(const Walk& w, uint64_t file_size) {
  const uint64_t huge[] = {uint64_t{1} << 62, ~uint64_t{0}, uint64_t{1} << 32, file_size};
  std::vector<Patch> out;
  for (uint64_t v : huge) {
    const std::string vs = " = " + std::to_string(v);
    out.push_back(patch("n_tensors" + vs, 8, v, {"tensor"}));
    out.push_back(patch("n_kv" + vs, 16, v, {"metadata"}));
    out.push_back(patch("first key length" + vs, w.kv.at(0).at, v, {"key"}));
    bool string_done = false, string_array_done = false, scalar_array_done = false;
    for (const WalkKv& kv : w.kv) {
      if (kv.type == kString && !string_done) {
        out.push_back(patch(kv.key + " string length" + vs, kv.value_at, v, {kv.key}));
        string_done = true;
      }
      if (kv.type == kArray && kv.count > 0 && kv.elem_type == kString && !string_array_done) {
        out.push_back(patch(kv.key + " array count" + vs, kv.value_at + 4, v, {kv.key}));
        out.push_back(patch(kv.key + "[0] string length" + vs, kv.value_at + 12, v, {kv.key}));
        string_array_done = true;
      }
      if (kv.type == kArray && kv.elem_type != kString && kv.elem_type != kArray && !scalar_array_done) {
        out.push_back(patch(kv.key + " array count" + vs, kv.value_at + 4, v, {kv.key}));
        scalar_array_done = true;
      }
    }
    for (const WalkTensor* t : {&w.tensors.front(), &w.tensors.back()}) {
      out.push_back(patch(t->name + " dimension 0" + vs, t->dims_at, v, {t->name}));
      out.push_back(patch(t->name + " last dimension" + vs, t->dims_at + 8 * (t->dims.size() - 1), v, {t->name}));
      if (v != file_size) out.push_back(patch(t->name + " offset" + vs, t->offset_at, v, {t->name}));
    }
  }
  const WalkTensor& t0 = w.tensors.front();
  const WalkTensor& tn = w.tensors.back();
  out.push_back(patch(t0.name + " name length = file size", t0.at, file_size, {"tensor 0"}));
  out.push_back(patch(t0.name + " dimension 0 x 1024", t0.dims_at, t0.dims[0] * 1024, {t0.name}));
  out.push_back(patch(t0.name + " last dimension x 2", t0.dims_at + 8 * (t0.dims.size() - 1), t0.dims.back() * 2,
                      {t0.name}));
  for (uint32_t n_dims : {0u, 5u, 1000u, ~0u})
    out.push_back(patch(t0.name + " n_dims = " + std::to_string(n_dims), t0.n_dims_at, n_dims, {t0.name}));
  for (uint32_t type : {999u, 4u, 31u, ~0u})
    out.push_back(patch(t0.name + " type = " + std::to_string(type), t0.type_at, type, {t0.name}));
  out.push_back(patch(t0.name + " offset = 2^64 - 32", t0.offset_at, ~uint64_t{31}, {t0.name}));
  out.push_back(patch(t0.name + " offset = file size rounded up", t0.offset_at, (file_size + 31) / 32 * 32, {t0.name}));
  out.push_back(patch(t0.name + " offset = next tensor's", t0.offset_at, w.tensors.at(1).offset, {t0.name}));
  out.push_back(patch(tn.name + " offset + 32", tn.offset_at, tn.offset + 32, {tn.name}));
  return out;
}

// Truncation points: every section boundary, inside the data, and `n_random` more.
std::vector<size_t> truncation_points(const Walk& w, uint64_t file_size, int n_random) {
  std::vector<size_t> cuts = w.cuts;
  cuts.push_back(w.header_end);
  cuts.push_back(w.data_start);
  cuts.push_back(w.data_start + 1);
  for (const WalkTensor& t : w.tensors) cuts.push_back(w.data_start + t.offset + 1);
  cuts.push_back((w.data_start + file_size) / 2);
  cuts.push_back(data_end(w) - 1);
  cuts.push_back(file_size - 1);
  std::mt19937_64 rng(1234);
  for (int i = 0; i < n_random; ++i) cuts.push_back(rng() % file_size);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  while (!cuts.empty() && cuts.back() >= file_size) cuts.pop_back();
  return cuts;
}

// `n` single-byte flips (position, xor mask): half anywhere in the header, half
// in its structure (counts, lengths, types, tensor infos) where they matter most.
std::vector<std::pair<size_t, uint8_t>> byte_flips(const Walk& w, int n, uint64_t seed) {
  std::vector<size_t> structural;
  for (auto [from, to] : w.structure)
    for (size_t p = from; p < to; ++p) structural.push_back(p);
  std::mt19937_64 rng(seed);
  std::vector<std::pair<size_t, uint8_t>> flips;
  for (int i = 0; i < n; ++i) {
    const size_t at = i % 2 ? structural[rng() % structural.size()] : rng() % w.data_start;
    flips.emplace_back(at, static_cast<uint8_t>(1 + rng() % 255));
  }
  return flips;
}

void write_at(const std::string& path, size_t at, const uint8_t* bytes, size_t n) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f.good());
  f.seekp(static_cast<std::streamoff>(at));
  f.write(reinterpret_cast<const char*>(bytes), static_cast<std::streamsize>(n));
  REQUIRE(f.good());
}

// A refused file: exit code 1, no signal, and an error naming the file and `fragments`.
std::string refusal_problem(const CommandResult& r, const std::string& path, const std::vector<std::string>& fragments) {
  if (r.signal != 0) return "killed by signal " + std::to_string(r.signal);
  if (r.exit_code != 1) return "exit code " + std::to_string(r.exit_code);
  if (!contains(r.err, "moe-gguf: error:")) return "no error line";
  if (!contains(r.err, path)) return "the error does not name the file";
  for (const std::string& f : fragments)
    if (!contains(r.err, f)) return "the error does not mention '" + f + "'";
  return "";
}

// Collects failures of a long loop and reports the first few in one check.
struct Failures {
  std::vector<std::string> list;
  void add(const std::string& what, const std::string& problem, const std::string& detail) {
    list.push_back(what + ": " + problem + (detail.empty() ? "" : " | " + detail));
  }
  void check() const {
    std::string shown;
    for (size_t i = 0; i < list.size() && i < 20; ++i) shown += "\n  " + list[i];
    CHECK_MESSAGE(list.empty(), list.size() << " failures:" << shown);
  }
};

// In-process: parse `data`; the result must be a GgufError naming the name and
// an offset, or (when `may_succeed`) a file whose tensors all lie in the buffer.
std::string parse_problem(const uint8_t* data, size_t size, bool may_succeed,
                          const std::vector<std::string>& fragments) {
  try {
    const moe::GgufFile f = moe::GgufFile::parse(data, size, "corrupt.gguf");
    if (!may_succeed) return "parsed without error";
    for (const moe::GgufKv& kv : f.metadata()) (void)kv.value.to_string();
    const uint64_t a = f.alignment();
    if (a == 0 || (a & (a - 1)) || f.data_offset() % a) return "bad alignment or data offset";
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    for (const moe::GgufTensorInfo& t : f.tensors()) {
      const moe::GgmlTypeTraits* tt = moe::ggml_type_traits(static_cast<uint32_t>(t.type));
      if (tt == nullptr || t.shape.empty() || t.shape.size() > 4) return t.name + ": bad type or rank";
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;  // the reader promises no overflow
      if (n != t.n_elements || t.nbytes != static_cast<uint64_t>(n / tt->block_size) * tt->type_size)
        return t.name + ": inconsistent size";
      if (t.offset % a || f.data_offset() + t.offset + t.nbytes > size || t.data != data + f.data_offset() + t.offset)
        return t.name + ": data not inside the file";
      spans.emplace_back(t.offset, t.offset + t.nbytes);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i)
      if (spans[i].first < spans[i - 1].second) return "overlapping tensors accepted";
    return "";
  } catch (const moe::GgufError& e) {
    const std::string msg = e.what();
    if (!contains(msg, "corrupt.gguf")) return "error does not name the file: " + msg;
    for (const std::string& f : fragments)
      if (!contains(msg, f)) return "error does not mention '" + f + "': " + msg;
    return "";
  } catch (const std::exception& e) {
    return std::string("unexpected exception (not GgufError): ") + e.what();
  }
}


// In-process: truncations at the boundaries, inflations and random flips on
// `bytes`; with `every_byte`, also truncation at every header byte and every
// structural byte flipped. Returns the number of parses.
size_t corrupt_in_process(std::vector<uint8_t> bytes, bool every_byte, Failures& failures) {
  const Walk w = walk(bytes);
  const uint64_t end = data_end(w);
  size_t parses = 0;

  // Each prefix is copied into a buffer of exactly its size, so a sanitizer
  // build sees any read past the end.
  std::vector<size_t> cuts = truncation_points(w, bytes.size(), 200);
  if (every_byte)
    for (size_t c = 0; c <= w.data_start; ++c) cuts.push_back(c);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (size_t cut : cuts) {
    const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    const std::string p = parse_problem(prefix.data(), prefix.size(), cut >= end, {"offset"});
    if (!p.empty()) failures.add("truncated at " + std::to_string(cut), p, "");
    ++parses;
  }

  const std::vector<uint8_t> original = bytes;
  for (const Patch& p : inflations(w, bytes.size())) {
    std::memcpy(bytes.data() + p.at, p.bytes.data(), p.bytes.size());
    const std::string problem = parse_problem(bytes.data(), bytes.size(), false, p.fragments);
    if (!problem.empty()) failures.add(p.what, problem, "");
    std::memcpy(bytes.data() + p.at, original.data() + p.at, p.bytes.size());
    ++parses;
  }

  std::vector<std::pair<size_t, uint8_t>> flips = byte_flips(w, every_byte ? 4000 : 500, 7);
  if (every_byte) {
    std::mt19937_64 rng(11);
    for (auto [from, to] : w.structure)
      for (size_t at = from; at < to; ++at) {
        flips.emplace_back(at, 0xff);
        flips.emplace_back(at, static_cast<uint8_t>(1 + rng() % 255));
      }
  }
  for (auto [at, mask] : flips) {
    bytes[at] ^= mask;
    const std::string p = parse_problem(bytes.data(), bytes.size(), true, {});
    if (!p.empty()) failures.add("byte " + std::to_string(at) + " ^ " + std::to_string(mask), p, "");
    bytes[at] = original[at];
    ++parses;
  }
  return parses;
}

// The same file with every array cut to its first kKeepElements elements: the
// header shrinks from 64 KiB to a few, so every byte of it can be tried.
std::vector<uint8_t> shrink_arrays(const std::vector<uint8_t>& b, const Walk& w) {
  std::vector<uint8_t> out(b.size(), 0);  // never larger than the original
  size_t n = 0;
  auto copy = [&](size_t from, size_t to) {
    std::memcpy(out.data() + n, b.data() + from, to - from);
    n += to - from;
  };
  copy(0, 24);
  for (const WalkKv& kv : w.kv) {
    if (kv.type != kArray || kv.count <= kKeepElements) {
      copy(kv.at, kv.end);
      continue;
    }
    copy(kv.at, kv.value_at + 4);  // key, type, element type
    std::memcpy(out.data() + n, &kKeepElements, 8);
    n += 8;
    copy(kv.value_at + 12, kv.prefix_end);
  }
  copy(w.tensors.empty() ? w.header_end : w.tensors.front().at, w.header_end);
  n = (n + w.alignment - 1) / w.alignment * w.alignment;  // zero padding
  copy(w.data_start, b.size());
  out.resize(n);
  return out;
}


}  // namespace

TEST_CASE("moe-gguf --json agrees with an independent walker on every fixture") {
  const std::vector<std::string> files = fixture_ggufs();
  if (files.empty()) return moe::test::skip("shared fixtures absent");
  for (const std::string& path : files) {
    INFO("file " << path);
    const std::vector<uint8_t> bytes = moe::test::read_file(path);
    const Walk w = walk(bytes);
    REQUIRE(data_end(w) <= bytes.size());
    const CommandResult r = run_tool(path, "--json");
    REQUIRE(r.signal == 0);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    const Json j = Json::parse(r.out);
    check_json_against_walk(j, w, path, bytes.size());

    // The architecture from the file's stem: V3.2 and V4 fixtures have their own.
    const std::string want_arch = contains(path, "tiny-dsv32.") ? "deepseek32"
                                  : contains(path, "tiny-dsv4.") ? "deepseek4"
                                                                 : "deepseek2";
    // Refused: tensors of a type the kernels cannot compute with, except
    // DeepSeek-V4's token -> experts table (i32, read as it is).
    bool all_supported = true;
    for (const WalkTensor& t : w.tensors) {
      const auto* traits = moe::ggml_type_traits(t.type);
      const bool table = t.type == static_cast<uint32_t>(moe::GgmlType::I32) && contains(t.name, "ffn_gate_tid2eid");
      if (traits && !traits->can_dequantize && !table) all_supported = false;
    }
    const WalkKv* arch = w.find("general.architecture");
    REQUIRE(arch != nullptr);
    CHECK(arch->str == want_arch);
    CHECK(j["metadata"]["general.architecture"]["value"] == want_arch);
    CHECK(j["summary"]["unsupported"].empty() == all_supported);
    if (contains(path, "tiny-dsv3.")) {
      const WalkKv* experts = w.find("deepseek2.expert_count");
      REQUIRE(experts != nullptr);
      CHECK(experts->num == 16);
      CHECK(j["metadata"]["deepseek2.expert_count"]["value"] == 16);
    }

    // The text form names every tensor, the architecture and no warning.
    const CommandResult t = run_tool(path);
    REQUIRE(t.signal == 0);
    REQUIRE_MESSAGE(t.exit_code == 0, t.err);
    CHECK(contains(t.out, "architecture     " + want_arch));
    CHECK(contains(t.out, "metadata: " + std::to_string(w.n_kv) + " keys"));
    CHECK(contains(t.out, "warning") != all_supported);
    for (const WalkTensor& wt : w.tensors) CHECK_MESSAGE(contains(t.out, " " + wt.name + " "), wt.name);
  }
}

TEST_CASE("moe-gguf abbreviates long arrays, and --all prints them whole") {
  const std::string path = corruption_base();
  if (path.empty()) return moe::test::skip("tiny-dsv3.Q4_K_M.gguf absent");
  const Walk w = walk(moe::test::read_file(path));
  const WalkKv* merges = w.find("tokenizer.ggml.merges");
  REQUIRE(merges != nullptr);
  REQUIRE(merges->count > 8);
  const CommandResult shortened = run_tool(path);
  const CommandResult all = run_tool(path, "--all");
  REQUIRE(shortened.exit_code == 0);
  REQUIRE(all.exit_code == 0);
  const std::string last = "\"" + merges->last_str + "\"";
  CHECK(contains(shortened.out, "[string; " + std::to_string(merges->count) + "] \"" + merges->str + "\", "));
  CHECK(contains(shortened.out, "..."));
  CHECK_FALSE(contains(shortened.out, ", " + last + "\n"));
  CHECK(contains(all.out, ", " + last + "\n"));
  CHECK(all.out.size() > 4 * shortened.out.size());
}

TEST_CASE("moe-gguf: a missing file, a directory and bad arguments exit 1 with a message") {
  const std::string dir = moe::test::temp_dir();
  const std::string missing = dir + "/no-such-model.gguf";
  CommandResult r = run_tool(missing);
  CHECK(r.signal == 0);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "moe-gguf: error:"));
  CHECK(contains(r.err, missing));
  CHECK(r.out.empty());

  r = run_tool(dir, "--json");
  CHECK(r.signal == 0);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "moe-gguf: error:"));
  CHECK(contains(r.err, dir));

  r = moe::test::run_command({moe_gguf()});
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "moe-gguf: error:"));
  r = moe::test::run_command({moe_gguf(), "--help"});
  CHECK(r.exit_code == 0);
  CHECK(contains(r.out, "--json"));

  const std::string empty = dir + "/empty.gguf";
  moe::test::write_file(empty, std::vector<uint8_t>{});
  r = run_tool(empty);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, empty));
}

TEST_CASE("moe-gguf describes ternary and NVFP4 tensors and warns that they cannot be computed with yet") {
  const std::string path = moe::test::temp_dir() + "/tq.gguf";
  {
    moe::GgufWriter w(path);
    w.set("general.architecture", moe::GgufValue::string("deepseek2"));
    w.set("test.nested", moe::GgufValue::array_of_arrays(
                             {moe::GgufValue::array(moe::GgufType::INT32, std::vector<int32_t>{1, -2, 3}),
                              moe::GgufValue::array_of_strings({"a", "b"})}));
    w.add_tensor("blk.0.ffn_down_exps.weight", moe::GgmlType::TQ2_0, {256, 2});
    w.add_tensor("output_norm.weight", moe::GgmlType::F32, {256});
    w.add_tensor("blk.0.ffn_up_exps.weight", moe::GgmlType::NVFP4, {256, 3});
    w.begin();
    for (size_t i = 0; i < w.n_tensors(); ++i) {
      const std::vector<uint8_t> zeros(w.tensor_nbytes(i));
      w.write_tensor_data(zeros.data(), zeros.size());
    }
    w.finish();
  }
  const std::vector<uint8_t> bytes = moe::test::read_file(path);
  const Walk walked = walk(bytes);

  const CommandResult j = run_tool(path, "--json");
  REQUIRE(j.signal == 0);
  REQUIRE_MESSAGE(j.exit_code == 0, j.err);
  const Json doc = Json::parse(j.out);
  check_json_against_walk(doc, walked, path, bytes.size());
  CHECK(doc["tensors"][0]["type"] == "tq2_0");
  CHECK(doc["tensors"][0]["type_id"] == 35);
  CHECK(doc["tensors"][2]["type"] == "nvfp4");
  CHECK(doc["metadata"]["test.nested"]["value"] == Json::parse(R"([[1, -2, 3], ["a", "b"]])"));
  CHECK(doc["summary"]["unsupported"] == Json::parse(R"(["blk.0.ffn_down_exps.weight", "blk.0.ffn_up_exps.weight"])"));
  CHECK(contains(j.err, "warning"));

  const CommandResult t = run_tool(path);
  REQUIRE(t.signal == 0);
  REQUIRE_MESSAGE(t.exit_code == 0, t.err);
  CHECK(contains(t.out, "blk.0.ffn_down_exps.weight"));
  CHECK(contains(t.out, "tq2_0"));
  const size_t at = t.out.find("warning:");
  REQUIRE(at != std::string::npos);
  const std::string warning = t.out.substr(at, t.out.find('\n', at) - at);
  INFO("warning: " << warning);
  CHECK(contains(warning, "cannot compute"));
  CHECK(contains(warning, "tq2_0"));
  CHECK(contains(warning, "nvfp4"));
  CHECK(contains(warning, "blk.0.ffn_down_exps.weight"));
  CHECK(contains(warning, "blk.0.ffn_up_exps.weight"));
  CHECK_FALSE(contains(warning, "output_norm"));
}

TEST_CASE("moe-gguf refuses truncated and inflated files with exit code 1, never a signal") {
  const std::string base = corruption_base();
  if (base.empty()) return moe::test::skip("tiny-dsv3.Q4_K_M.gguf absent");
  const std::vector<uint8_t> bytes = moe::test::read_file(base);
  const Walk w = walk(bytes);
  const uint64_t end = data_end(w);
  const std::string path = moe::test::temp_dir() + "/corrupt.gguf";
  Failures failures;

  // Under a sanitizer each run costs ~10x; there the in-process test covers every cut.
  std::vector<size_t> cuts = truncation_points(w, bytes.size(), 50);
  if (kSanitized) {
    std::vector<size_t> fewer;
    for (size_t i = 0; i < cuts.size(); i += 4) fewer.push_back(cuts[i]);
    cuts = fewer;
  }
  int runs = 0;
  for (size_t cut : cuts) {
    moe::test::write_file(path, bytes.data(), cut);
    const CommandResult r = run_tool(path, runs++ % 2 ? "--json" : "");
    if (cut < end) {
      const std::string p = refusal_problem(r, path, {"offset"});
      if (!p.empty()) failures.add("truncated at " + std::to_string(cut), p, r.err);
    } else if (r.exit_code != 0) {
      failures.add("truncated after the data at " + std::to_string(cut), "refused", r.err);
    }
  }

  moe::test::write_file(path, bytes);
  for (const Patch& p : inflations(w, bytes.size())) {
    write_at(path, p.at, p.bytes.data(), p.bytes.size());
    const CommandResult r = run_tool(path, runs++ % 2 ? "--json" : "");
    const std::string problem = refusal_problem(r, path, p.fragments);
    if (!problem.empty()) failures.add(p.what, problem, r.err);
    write_at(path, p.at, bytes.data() + p.at, p.bytes.size());  // restore
  }
  failures.check();
  MESSAGE(runs << " runs of moe-gguf on truncated or inflated files");
}

// On a big file a count can pass the "fits in the bytes left" check and still
// ask for far more memory than there is (each entry takes more memory than
// its least size on disk). A sparse 1 TiB file makes that case cheap.
TEST_CASE("moe-gguf refuses counts that fit a huge file but not in memory") {
  const std::string base = corruption_base();
  if (base.empty()) return moe::test::skip("tiny-dsv3.Q4_K_M.gguf absent");
  const std::vector<uint8_t> bytes = moe::test::read_file(base);
  const Walk w = walk(bytes);
  const uint64_t size = uint64_t{1} << 40;
  const std::string path = moe::test::temp_dir() + "/sparse.gguf";
  moe::test::write_file(path, bytes);
  std::error_code ec;
  fs::resize_file(path, size, ec);
  if (ec) return moe::test::skip("no sparse 1 TiB file here: " + ec.message());
  const WalkKv* tokens = w.find("tokenizer.ggml.tokens");
  REQUIRE(tokens != nullptr);
  // The largest values the bytes-left checks let through (least entry sizes 32, 13, 8).
  const std::vector<Patch> patches = {
      patch("n_tensors = (size - 24) / 32", 8, (size - 24) / 32, {"tensor"}),
      patch("n_kv = (size - 24) / 13", 16, (size - 24) / 13, {"metadata"}),
      patch("tokens count = bytes left / 8", tokens->value_at + 4, (size - tokens->value_at - 12) / 8, {}),
  };
  Failures failures;
  for (const Patch& p : patches) {
    write_at(path, p.at, p.bytes.data(), p.bytes.size());
    const CommandResult r = run_tool(path);
    const std::string problem = refusal_problem(r, path, p.fragments);
    if (!problem.empty()) failures.add(p.what, problem, r.err);
    write_at(path, p.at, bytes.data() + p.at, p.bytes.size());
  }
  failures.check();
}

TEST_CASE("moe-gguf survives single flipped header bytes") {
  const std::string base = corruption_base();
  if (base.empty()) return moe::test::skip("tiny-dsv3.Q4_K_M.gguf absent");
  const std::vector<uint8_t> bytes = moe::test::read_file(base);
  const Walk w = walk(bytes);
  const std::string path = moe::test::temp_dir() + "/flipped.gguf";
  moe::test::write_file(path, bytes);
  Failures failures;
  int refused = 0, runs = 0;
  for (auto [at, mask] : byte_flips(w, kSanitized ? 60 : 200, 99)) {
    const uint8_t flipped = bytes[at] ^ mask;
    write_at(path, at, &flipped, 1);
    const CommandResult r = run_tool(path, runs++ % 2 ? "--json" : "");
    const std::string what = "byte " + std::to_string(at) + " ^ " + std::to_string(mask);
    if (r.signal != 0) failures.add(what, "killed by signal " + std::to_string(r.signal), r.err);
    else if (r.exit_code == 1) {
      ++refused;
      if (!contains(r.err, "moe-gguf: error:")) failures.add(what, "exit 1 without an error line", r.err);
    } else if (r.exit_code != 0) failures.add(what, "exit code " + std::to_string(r.exit_code), r.err);
    else if (r.out.empty()) failures.add(what, "exit 0 with no output", r.err);
    write_at(path, at, &bytes[at], 1);
  }
  failures.check();
  MESSAGE(runs << " flipped files, " << refused << " refused");
}

TEST_CASE("gguf reader in-process: truncations, flips and inflations give GgufError or a sound file") {
  const std::string base = corruption_base();
  if (base.empty()) return moe::test::skip("tiny-dsv3.Q4_K_M.gguf absent");
  const std::vector<uint8_t> bytes = moe::test::read_file(base);
  const Walk w = walk(bytes);
  Failures failures;
  size_t parses = corrupt_in_process(bytes, false, failures);

  const std::vector<uint8_t> small = shrink_arrays(bytes, w);
  const Walk ws = walk(small);
  REQUIRE(ws.n_kv == w.n_kv);
  REQUIRE(ws.tensors.size() == w.tensors.size());
  REQUIRE(ws.header_end < 16384);
  REQUIRE(parse_problem(small.data(), small.size(), true, {}).empty());
  parses += corrupt_in_process(small, true, failures);
  failures.check();
  MESSAGE(parses << " parses of corrupted files");
}
