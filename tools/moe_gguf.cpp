// moe-gguf: describes a GGUF file. Prints the header, the metadata, a table
// of tensors and a summary (parameters, bytes, bits per weight, size by
// type), as text or as one JSON document (--json). Tensor types moe.cpp
// cannot compute with yet are described like any other, then named in a
// warning, so a user learns before loading that the model would be refused.
//
//   moe-gguf model.gguf            # long arrays and strings abbreviated
//   moe-gguf model.gguf --all      # every array element, whole strings
//   moe-gguf model.gguf --json     # everything, for scripts
//
// Any error (missing file, malformed GGUF) prints "moe-gguf: error: ..." and
// exits 1.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"
#include "gguf/gguf_reader.h"

namespace {

using moe::GgmlType;
using moe::GgufFile;
using moe::GgufTensorInfo;
using moe::GgufType;
using moe::GgufValue;
using moe::strfmt;
using Json = nlohmann::ordered_json;  // keeps metadata in file order

constexpr size_t kShownItems = 8;        // array elements shown without --all
constexpr size_t kShownUnsupported = 8;  // refused tensors named without --all

// ---- totals ----------------------------------------------------------------------

struct TypeTotals {
  GgmlType type;
  uint64_t count = 0;
  uint64_t bytes = 0;
};

struct Summary {
  std::string architecture;  // "" when general.architecture is absent or not a string
  uint64_t n_params = 0;     // sum of n_elements
  uint64_t n_bytes = 0;      // sum of nbytes
  std::vector<TypeTotals> by_type;                    // largest first
  std::vector<const GgufTensorInfo*> unsupported;     // types that cannot be computed with yet
};

Summary summarize(const GgufFile& f) {
  Summary s;
  if (const GgufValue* a = f.find("general.architecture"); a && a->type() == GgufType::STRING)
    s.architecture = a->as_string();
  for (const GgufTensorInfo& t : f.tensors()) {
    s.n_params += static_cast<uint64_t>(t.n_elements);
    s.n_bytes += t.nbytes;
    auto it = std::find_if(s.by_type.begin(), s.by_type.end(), [&](const TypeTotals& x) { return x.type == t.type; });
    if (it == s.by_type.end()) it = s.by_type.insert(s.by_type.end(), TypeTotals{t.type});
    it->count += 1;
    it->bytes += t.nbytes;
    // Integer tables are read as they are, not computed with: DeepSeek-V4's
    // hash layers' token -> experts map (ffn_gate_tid2eid, I32).
    const bool table = t.type == moe::GgmlType::I32 && t.name.find("ffn_gate_tid2eid") != std::string::npos;
    if (!moe::ggml_type_traits(t.type).can_dequantize && !table) s.unsupported.push_back(&t);
  }
  std::stable_sort(s.by_type.begin(), s.by_type.end(),
                   [](const TypeTotals& a, const TypeTotals& b) { return a.bytes > b.bytes; });
  return s;
}

double bits_per_weight(const Summary& s) {
  return s.n_params == 0 ? 0.0 : 8.0 * static_cast<double>(s.n_bytes) / static_cast<double>(s.n_params);
}

// The distinct type names among the refused tensors: "iq2_xxs, iq3_s".
std::string unsupported_type_names(const Summary& s) {
  std::string out;
  for (const TypeTotals& t : s.by_type) {
    if (moe::ggml_type_traits(t.type).can_dequantize) continue;
    out += (out.empty() ? "" : ", ") + std::string(moe::ggml_type_name(t.type));
  }
  return out;
}

// ---- number formatting --------------------------------------------------------------

std::string with_commas(uint64_t v) {
  std::string digits = std::to_string(v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// 15912960 -> "15.9 M", 671e9 -> "671 B".
std::string human_count(uint64_t n) {
  static const char* const kUnits[] = {"", " K", " M", " B", " T"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000.0 && u < 4) {
    v /= 1000.0;
    ++u;
  }
  if (u == 0) return std::to_string(n);
  return strfmt(v >= 100 ? "%.0f%s" : v >= 10 ? "%.1f%s" : "%.2f%s", v, kUnits[u]);
}

double mib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

// ---- metadata values ------------------------------------------------------------------

// A string in double quotes with escapes, never shortened (--all).
std::string quote_full(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') out += {'\\', ch};
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += strfmt("\\x%02x", c);
    else out += ch;
  }
  return out + "\"";
}

std::string value_text(const GgufValue& v, bool all) {
  if (!all) return v.to_string(kShownItems);
  if (v.type() == GgufType::STRING) return quote_full(v.as_string());
  if (!v.is_array() || (v.array_type() != GgufType::STRING && v.array_type() != GgufType::ARRAY))
    return v.to_string(std::numeric_limits<size_t>::max());  // scalars are never shortened
  std::string out = strfmt("[%s; %" PRIu64 "]", moe::gguf_type_name(v.array_type()), v.array_size());
  for (uint64_t i = 0; i < v.array_size(); ++i) {
    out += i == 0 ? " " : ", ";
    out += v.array_type() == GgufType::STRING ? quote_full(v.strings()[i]) : value_text(v.arrays()[i], true);
  }
  return out;
}

Json scalar_json(GgufType t, const uint8_t* p) {
  auto get = [p](auto zero) {
    decltype(zero) x;
    std::memcpy(&x, p, sizeof x);
    return x;
  };
  switch (t) {
    case GgufType::UINT8: return get(uint8_t{});
    case GgufType::INT8: return get(int8_t{});
    case GgufType::UINT16: return get(uint16_t{});
    case GgufType::INT16: return get(int16_t{});
    case GgufType::UINT32: return get(uint32_t{});
    case GgufType::INT32: return get(int32_t{});
    case GgufType::UINT64: return get(uint64_t{});
    case GgufType::INT64: return get(int64_t{});
    case GgufType::FLOAT32: return static_cast<double>(get(float{}));
    case GgufType::FLOAT64: return get(double{});
    case GgufType::BOOL: return *p != 0;
    case GgufType::STRING:
    case GgufType::ARRAY: break;
  }
  return nullptr;
}

// Arrays become JSON arrays, in full; arrays of arrays nest.
Json value_json(const GgufValue& v) {
  if (v.type() == GgufType::STRING) return v.as_string();
  if (!v.is_array()) return scalar_json(v.type(), v.raw().data());
  Json a = Json::array();
  if (v.array_type() == GgufType::STRING) {
    for (const std::string& s : v.strings()) a.push_back(s);
  } else if (v.array_type() == GgufType::ARRAY) {
    for (const GgufValue& x : v.arrays()) a.push_back(value_json(x));
  } else {
    const size_t es = moe::gguf_scalar_size(v.array_type());
    for (uint64_t i = 0; i < v.array_size(); ++i) a.push_back(scalar_json(v.array_type(), v.raw().data() + i * es));
  }
  return a;
}

// ---- JSON ----------------------------------------------------------------------------

Json file_json(const GgufFile& f, const Summary& s) {
  Json j;
  j["file"] = f.path();
  j["version"] = f.version();
  j["alignment"] = f.alignment();
  j["data_offset"] = f.data_offset();
  j["file_size"] = f.file_size();
  if (f.shards().size() > 1) {
    Json shards = Json::array();
    for (const moe::GgufShard& sh : f.shards())
      shards.push_back({{"path", sh.path}, {"file_size", sh.size}, {"data_offset", sh.data_offset},
                        {"n_tensors", sh.n_tensors}});
    j["shards"] = std::move(shards);
    j["total_size"] = f.total_size();
  }
  Json meta = Json::object();
  for (const moe::GgufKv& kv : f.metadata()) {
    Json e;
    e["type"] = moe::gguf_type_name(kv.value.type());
    if (kv.value.is_array()) {
      e["element_type"] = moe::gguf_type_name(kv.value.array_type());
      e["count"] = kv.value.array_size();
    }
    e["value"] = value_json(kv.value);
    meta[kv.key] = std::move(e);
  }
  j["metadata"] = std::move(meta);
  Json tensors = Json::array();
  for (const GgufTensorInfo& t : f.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"type", moe::ggml_type_name(t.type)},
                       {"type_id", static_cast<uint32_t>(t.type)},
                       {"shape", t.shape},
                       {"n_elements", t.n_elements},
                       {"nbytes", t.nbytes},
                       {"offset", t.offset},
                       {"shard", t.shard},
                       {"file_offset", f.shards().at(t.shard).data_offset + t.offset}});
  }
  j["tensors"] = std::move(tensors);
  Json by_type = Json::object();
  for (const TypeTotals& t : s.by_type) by_type[moe::ggml_type_name(t.type)] = {{"count", t.count}, {"bytes", t.bytes}};
  Json unsupported = Json::array();
  for (const GgufTensorInfo* t : s.unsupported) unsupported.push_back(t->name);
  j["summary"] = {{"architecture", s.architecture},
                  {"n_params", s.n_params},
                  {"n_bytes", s.n_bytes},
                  {"bits_per_weight", bits_per_weight(s)},
                  {"by_type", std::move(by_type)},
                  {"unsupported", std::move(unsupported)}};
  return j;
}

// ---- text ----------------------------------------------------------------------------

void print_text(const GgufFile& f, const Summary& s, bool all) {
  std::printf("%s\n", f.path().c_str());
  std::printf("  GGUF version     %" PRIu32 "\n", f.version());
  std::printf("  alignment        %" PRIu32 "\n", f.alignment());
  std::printf("  data offset      %s (0x%" PRIx64 ")\n", with_commas(f.data_offset()).c_str(), f.data_offset());
  std::printf("  file size        %s bytes (%.2f MiB)\n", with_commas(f.file_size()).c_str(), mib(f.file_size()));
  if (f.shards().size() > 1) {
    std::printf("  gguf-split set   %zu files, %s bytes (%.2f MiB) in all:\n", f.shards().size(),
                with_commas(f.total_size()).c_str(), mib(f.total_size()));
    for (size_t i = 0; i < f.shards().size(); ++i)
      std::printf("    %zu  %s  %s bytes, %zu tensors\n", i, f.shards()[i].path.c_str(),
                  with_commas(f.shards()[i].size).c_str(), f.shards()[i].n_tensors);
  }
  if (f.is_lone_shard())
    std::printf("  note             shard %llu of %llu of a gguf-split set, described alone (the first shard "
                "describes the whole set)\n",
                static_cast<unsigned long long>(f.get_u64("split.no") + 1),
                static_cast<unsigned long long>(f.get_u64("split.count")));

  std::printf("\nmetadata: %zu keys\n", f.metadata().size());
  size_t key_w = 0;
  for (const moe::GgufKv& kv : f.metadata()) key_w = std::max(key_w, kv.key.size());
  key_w = std::min<size_t>(key_w, 48);
  for (const moe::GgufKv& kv : f.metadata())
    std::printf("  %-*s  %-7s  %s\n", static_cast<int>(key_w), kv.key.c_str(), moe::gguf_type_name(kv.value.type()),
                value_text(kv.value, all).c_str());

  std::printf("\ntensors: %zu%s\n", f.tensors().size(),
              f.tensors().empty() ? "" : " (offsets from the data section start)");
  size_t name_w = 4, shape_w = 5;
  for (const GgufTensorInfo& t : f.tensors()) {
    name_w = std::max(name_w, t.name.size());
    shape_w = std::max(shape_w, t.shape_string().size());
  }
  name_w = std::min<size_t>(name_w, 60);
  const bool set = f.shards().size() > 1;
  if (!f.tensors().empty())
    std::printf("  %5s  %-*s  %-7s  %-*s  %15s  %10s  %15s%s\n", "#", static_cast<int>(name_w), "name", "type",
                static_cast<int>(shape_w), "shape", "bytes", "MiB", "offset", set ? "  shard" : "");
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const GgufTensorInfo& t = f.tensors()[i];
    std::printf("  %5zu  %-*s  %-7s  %-*s  %15s  %10.3f  %15s%s\n", i, static_cast<int>(name_w), t.name.c_str(),
                moe::ggml_type_name(t.type), static_cast<int>(shape_w), t.shape_string().c_str(),
                with_commas(t.nbytes).c_str(), mib(t.nbytes), with_commas(t.offset).c_str(),
                set ? strfmt("  %5u", t.shard).c_str() : "");
  }

  std::printf("\nsummary\n");
  std::printf("  architecture     %s\n",
              s.architecture.empty() ? "(general.architecture not set)" : s.architecture.c_str());
  std::printf("  parameters       %s (%s)\n", human_count(s.n_params).c_str(), with_commas(s.n_params).c_str());
  std::printf("  tensor bytes     %s (%.2f MiB)\n", with_commas(s.n_bytes).c_str(), mib(s.n_bytes));
  if (s.n_params > 0) std::printf("  bits per weight  %.3f\n", bits_per_weight(s));
  if (!s.by_type.empty()) std::printf("  by type:\n");
  for (const TypeTotals& t : s.by_type) {
    const double pct = s.n_bytes ? 100.0 * static_cast<double>(t.bytes) / static_cast<double>(s.n_bytes) : 0.0;
    std::printf("    %-8s %6" PRIu64 " tensors  %15s bytes  %5.1f%%%s\n", moe::ggml_type_name(t.type), t.count,
                with_commas(t.bytes).c_str(), pct,
                moe::ggml_type_traits(t.type).can_dequantize || t.type == moe::GgmlType::I32
                    ? ""
                    : "  (moe.cpp cannot compute with this type yet)");
  }
}

// One line naming the types and the tensors that loading for inference would refuse.
std::string unsupported_warning(const Summary& s, bool all) {
  std::string names;
  const size_t shown = all ? s.unsupported.size() : std::min(s.unsupported.size(), kShownUnsupported);
  for (size_t i = 0; i < shown; ++i) names += (i ? ", " : "") + s.unsupported[i]->name;
  if (shown < s.unsupported.size()) names += strfmt(", ... (%zu more; --all lists them)", s.unsupported.size() - shown);
  return strfmt("warning: %zu tensor%s of type %s, which moe.cpp cannot compute with yet; loading this file "
                "for inference would refuse: %s",
                s.unsupported.size(), s.unsupported.size() == 1 ? "" : "s", unsupported_type_names(s).c_str(),
                names.c_str());
}

// The first file of a gguf-split set is described with the whole set; a later
// shard alone (with a note), since an inspector should open any file.
GgufFile open_for_description(const std::string& path) {
  GgufFile f = GgufFile::open(path, /*map=*/true, /*whole_set=*/false);
  if (f.has("split.count") && !f.is_lone_shard()) return GgufFile::open(path);
  return f;
}

int run(const std::string& path, bool json, bool all) {
  const GgufFile f = open_for_description(path);
  const Summary s = summarize(f);
  if (json) {
    // Token strings need not be valid UTF-8: replace bad bytes rather than throw.
    const std::string text = file_json(f, s).dump(1, ' ', false, Json::error_handler_t::replace);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    if (!s.unsupported.empty()) std::fprintf(stderr, "moe-gguf: %s\n", unsupported_warning(s, all).c_str());
  } else {
    print_text(f, s, all);
    if (!s.unsupported.empty()) std::printf("\n%s\n", unsupported_warning(s, all).c_str());
  }
  if (std::fflush(stdout) != 0) throw moe::Error("cannot write to stdout");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-gguf: describe a GGUF file (header, metadata, tensors, size summary)"};
  std::string path;
  bool json = false, all = false;
  app.add_option("file", path, "GGUF file")->required();
  app.add_flag("--json", json, "print one JSON document (arrays in full)");
  app.add_flag("--all", all, "print every array element and whole strings, and name every refused tensor");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "moe-gguf: error: %s\nRun with --help for more information.\n", e.what());
    return 1;
  }
  try {
    return run(path, json, all);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe-gguf: error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "moe-gguf: error: unknown exception\n");
  }
  return 1;
}
