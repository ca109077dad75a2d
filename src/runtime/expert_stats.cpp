#include "runtime/expert_stats.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace moe {

namespace {
constexpr const char* kFormat = "moe.cpp expert stats";
}

ExpertStats ExpertStats::read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_error("cannot read expert stats file '%s'", path.c_str());
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const std::exception& e) {
    throw_error("expert stats file '%s' is not JSON: %s", path.c_str(), e.what());
  }
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(key))
      throw_error("expert stats file '%s': field '%s' is missing", path.c_str(), key);
    return j[key];
  };
  auto count = [&](const char* key, int64_t max) {
    const nlohmann::json& v = field(key);
    if (!v.is_number_unsigned() || v.get<uint64_t>() > static_cast<uint64_t>(max))
      throw_error("expert stats file '%s': '%s' must be a whole number from 0 to %lld", path.c_str(), key,
                  static_cast<long long>(max));
    return v.get<int64_t>();
  };
  if (field("format") != kFormat)
    throw_error("expert stats file '%s': format is not \"%s\"", path.c_str(), kFormat);
  if (field("version") != 1) throw_error("expert stats file '%s': version %s is not supported (1 is)", path.c_str(),
                                         field("version").dump().c_str());
  ExpertStats s;
  if (j.contains("model") && j["model"].is_string()) s.model = j["model"].get<std::string>();
  s.n_layers = count("n_layers", 1 << 16);
  s.n_experts = count("n_experts", 1 << 16);
  s.top_k = count("top_k", 1 << 16);
  s.tokens = static_cast<uint64_t>(count("tokens", INT64_MAX));
  const nlohmann::json& rows = field("counts");
  if (!rows.is_array() || static_cast<int64_t>(rows.size()) != s.n_layers)
    throw_error("expert stats file '%s': 'counts' must be an array of n_layers = %lld rows", path.c_str(),
                static_cast<long long>(s.n_layers));
  s.counts.reserve(static_cast<size_t>(s.n_layers * s.n_experts));
  for (size_t l = 0; l < rows.size(); ++l) {
    const nlohmann::json& row = rows[l];
    if (!row.is_array() || static_cast<int64_t>(row.size()) != s.n_experts)
      throw_error("expert stats file '%s': counts[%zu] must be an array of n_experts = %lld counts", path.c_str(), l,
                  static_cast<long long>(s.n_experts));
    for (const auto& c : row) {
      if (!c.is_number_unsigned())
        throw_error("expert stats file '%s': counts[%zu] holds %s, not a count", path.c_str(), l, c.dump().c_str());
      s.counts.push_back(c.get<uint64_t>());
    }
  }
  return s;
}

std::string ExpertStats::to_json() const {
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t l = 0; l < n_layers; ++l) {
    nlohmann::json row = nlohmann::json::array();
    for (int64_t e = 0; e < n_experts; ++e) row.push_back(at(l, e));
    rows.push_back(std::move(row));
  }
  // One layer per line: readable, and diffs of two runs line up.
  std::string out = strfmt("{\"format\": \"%s\", \"version\": 1, \"model\": %s, \"n_layers\": %lld, \"n_experts\": %lld, "
                           "\"top_k\": %lld, \"tokens\": %llu,\n \"counts\": [",
                           kFormat, nlohmann::json(model).dump().c_str(), static_cast<long long>(n_layers),
                           static_cast<long long>(n_experts), static_cast<long long>(top_k),
                           static_cast<unsigned long long>(tokens));
  for (size_t l = 0; l < rows.size(); ++l) out += (l ? ",\n  " : "\n  ") + rows[l].dump();
  return out + "]}\n";
}

void ExpertStats::write(const std::string& path) const { write_file_atomic(path, to_json()); }

}  // namespace moe
