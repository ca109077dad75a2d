#include "runtime/expert_placement.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/expert_stats.h"

namespace moe {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One -ot rule: tensors whose name contains a match of `re` go to the host
// (CPU) or to the device.
struct OverrideRule {
  std::string text;
  std::regex re;
  bool to_host = true;
};

std::vector<OverrideRule> parse_overrides(const std::vector<std::string>& args, const PlacementInputs& in) {
  std::vector<OverrideRule> rules;
  for (const std::string& arg : args) {
    size_t begin = 0;
    while (begin <= arg.size()) {
      size_t end = arg.find(',', begin);
      if (end == std::string::npos) end = arg.size();
      const std::string item = arg.substr(begin, end - begin);
      begin = end + 1;
      if (item.empty()) continue;
      const size_t eq = item.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
        throw_error("-ot '%s': expected REGEX=BACKEND (for example 'exps=CPU')", item.c_str());
      OverrideRule r;
      r.text = item;
      const std::string backend = lower(item.substr(eq + 1));
      if (backend == "cpu" || backend == lower(in.host_name)) {
        r.to_host = true;
      } else if (backend == "cuda" || backend == "gpu" || backend.rfind("cuda", 0) == 0 ||
                 (!in.device_name.empty() && backend == lower(in.device_name))) {
        if (in.device_name.empty())
          throw_error("-ot '%s': there is no device backend in this run, only the CPU", item.c_str());
        r.to_host = false;
      } else {
        throw_error("-ot '%s': unknown backend '%s' (use CPU, or CUDA0 for the device)", item.c_str(),
                    item.substr(eq + 1).c_str());
      }
      try {
        r.re = std::regex(item.substr(0, eq));
      } catch (const std::regex_error& e) {
        throw_error("-ot '%s': bad regular expression: %s", item.c_str(), e.what());
      }
      rules.push_back(std::move(r));
    }
  }
  return rules;
}

// The first rule that matches a name, as llama.cpp applies its overrides.
const OverrideRule* first_match(const std::vector<OverrideRule>& rules, const std::string& name) {
  for (const OverrideRule& r : rules)
    if (std::regex_search(name, r.re)) return &r;
  return nullptr;
}

enum class Forced { kNone, kHost, kDevice };

}  // namespace

int64_t parse_byte_size(const std::string& text) {
  size_t i = 0;
  double v = 0;
  try {
    v = std::stod(text, &i);
  } catch (const std::exception&) {
    throw_error("'%s' is not a size (examples: 8G, 512M, 1.5GiB, 300000000)", text.c_str());
  }
  std::string unit = lower(text.substr(i));
  double mult = 1;
  if (unit == "" || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mult = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else throw_error("'%s': unknown unit '%s' (use K, M, G or T)", text.c_str(), text.substr(i).c_str());
  if (!std::isfinite(v) || v < 0 || v * mult > 9.0e18)
    throw_error("'%s' is not a size from 0 to 8 EiB", text.c_str());
  return static_cast<int64_t>(v * mult);
}

std::string format_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return strfmt("%.2f GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return strfmt("%.1f MiB", b / (1024.0 * 1024));
  if (b >= 1024.0) return strfmt("%.1f KiB", b / 1024.0);
  return strfmt("%.0f B", b);
}

std::vector<int32_t> ExpertPlacement::device_experts(int64_t layer) const {
  std::vector<int32_t> out;
  if (!device_active) return out;
  const auto& slots = device_slot[static_cast<size_t>(layer)];
  out.resize(static_cast<size_t>(std::count_if(slots.begin(), slots.end(), [](int32_t s) { return s >= 0; })));
  for (size_t e = 0; e < slots.size(); ++e)
    if (slots[e] >= 0) out[static_cast<size_t>(slots[e])] = static_cast<int32_t>(e);
  return out;
}

int64_t ExpertPlacement::n_host_experts(int64_t layer) const {
  const auto& slots = device_slot[static_cast<size_t>(layer)];
  if (!device_active) return static_cast<int64_t>(slots.size());
  return std::count_if(slots.begin(), slots.end(), [](int32_t s) { return s < 0; });
}

ExpertPlacement plan_expert_placement(const std::vector<TensorFootprint>& tensors, int64_t n_layers,
                                      const PlacementInputs& in) {
  ExpertPlacement p;
  p.host_name = in.host_name;
  p.host_memory = in.host_memory;
  p.device_name = in.device_name;
  p.budget = in.budget;
  p.device_slot.assign(static_cast<size_t>(n_layers), {});

  // Per layer: its routed-expert tensors and the bytes of one expert.
  std::vector<size_t> expert_bytes(static_cast<size_t>(n_layers), 0);
  std::vector<std::vector<const TensorFootprint*>> expert_tensors(static_cast<size_t>(n_layers));
  std::map<std::string, bool> seen;  // tied tensors appear twice
  size_t every_token = 0;
  for (const TensorFootprint& t : tensors) {
    if (!seen.emplace(t.name, true).second) continue;
    if (t.role == TensorRole::kEveryToken) {
      every_token += t.bytes;
      continue;
    }
    MOE_ASSERT(t.layer >= 0 && t.layer < n_layers && t.n_experts > 0, "routed expert tensor '%s' has no layer",
               t.name.c_str());
    auto& slots = p.device_slot[static_cast<size_t>(t.layer)];
    if (slots.empty()) slots.assign(static_cast<size_t>(t.n_experts), -1);
    MOE_ASSERT(static_cast<int64_t>(slots.size()) == t.n_experts, "tensor '%s': %lld experts, its layer has %zu",
               t.name.c_str(), static_cast<long long>(t.n_experts), slots.size());
    expert_bytes[static_cast<size_t>(t.layer)] += t.bytes / static_cast<size_t>(t.n_experts);
    expert_tensors[static_cast<size_t>(t.layer)].push_back(&t);
  }
  for (const auto& slots : p.device_slot) p.total_experts += static_cast<int64_t>(slots.size());
  size_t all_experts = 0;
  for (int64_t l = 0; l < n_layers; ++l)
    all_experts += expert_bytes[static_cast<size_t>(l)] * p.device_slot[static_cast<size_t>(l)].size();

  if (in.stats) {
    const ExpertStats& s = *in.stats;
    if (s.n_layers != n_layers)
      throw_error("--expert-stats: the file has %lld layers, the model %lld", static_cast<long long>(s.n_layers),
                  static_cast<long long>(n_layers));
    for (int64_t l = 0; l < n_layers; ++l) {
      const auto& slots = p.device_slot[static_cast<size_t>(l)];
      if (!slots.empty() && static_cast<int64_t>(slots.size()) != s.n_experts)
        throw_error("--expert-stats: the file has %lld experts per layer, the model %zu",
                    static_cast<long long>(s.n_experts), slots.size());
    }
  }

  const std::vector<OverrideRule> rules = parse_overrides(in.options.overrides, in);
  auto host_only = [&] {
    p.device_active = false;
    p.host = {every_token, all_experts, in.kv_bytes, p.total_experts};
    p.device = {};
    return p;
  };
  if (in.device_name.empty()) return host_only();
  if (in.options.n_gpu_layers == 0) {
    p.note = "-ngl 0: everything runs on the " + in.host_name;
    return host_only();
  }

  // Tensors every token uses stay with the device: -ot may not send them to the CPU.
  for (const TensorFootprint& t : tensors) {
    if (t.role != TensorRole::kEveryToken) continue;
    if (const OverrideRule* r = first_match(rules, t.name); r && r->to_host)
      throw_error("-ot '%s' matches '%s': only routed expert tensors (ffn_*_exps) can stay on the CPU; the device "
                  "computes attention, dense layers and shared experts", r->text.c_str(), t.name.c_str());
  }
  const size_t fixed = every_token + in.kv_bytes;
  if (in.budget >= 0 && fixed > static_cast<size_t>(in.budget)) {
    p.note = strfmt("%s's budget of %s cannot hold the weights every token uses and the KV cache (%s): everything "
                    "runs on the %s", in.device_name.c_str(), format_bytes(static_cast<double>(in.budget)).c_str(),
                    format_bytes(static_cast<double>(fixed)).c_str(), in.host_name.c_str());
    return host_only();
  }
  p.device_active = true;
  p.device = {every_token, 0, in.kv_bytes, 0};
  size_t used = fixed;
  const size_t budget = in.budget < 0 ? SIZE_MAX : static_cast<size_t>(in.budget);

  // Each layer's experts: forced to a side by a flag, or free.
  std::vector<Forced> forced(static_cast<size_t>(n_layers), Forced::kNone);
  for (int64_t l = 0; l < n_layers; ++l) {
    if (p.device_slot[static_cast<size_t>(l)].empty()) continue;
    Forced& f = forced[static_cast<size_t>(l)];
    const bool outside_ngl = in.options.n_gpu_layers > 0 && l < n_layers - in.options.n_gpu_layers;
    if (in.options.cpu_moe || l < in.options.n_cpu_moe || outside_ngl) f = Forced::kHost;
    const OverrideRule* rule = nullptr;
    for (const TensorFootprint* t : expert_tensors[static_cast<size_t>(l)]) {
      const OverrideRule* r = first_match(rules, t->name);
      if (t == expert_tensors[static_cast<size_t>(l)].front()) {
        rule = r;
      } else if ((r == nullptr) != (rule == nullptr) || (r && r->to_host != rule->to_host)) {
        throw_error("-ot: the routed expert tensors of layer %lld are sent to different backends ('%s' and '%s'); "
                    "an expert's gate, up and down matrices are placed together",
                    static_cast<long long>(l), expert_tensors[static_cast<size_t>(l)].front()->name.c_str(),
                    t->name.c_str());
      }
    }
    if (rule) f = rule->to_host ? Forced::kHost : Forced::kDevice;
  }

  std::vector<int32_t> next_slot(static_cast<size_t>(n_layers), 0);
  auto place = [&](int64_t l, int64_t e) {
    p.device_slot[static_cast<size_t>(l)][static_cast<size_t>(e)] = next_slot[static_cast<size_t>(l)]++;
    used += expert_bytes[static_cast<size_t>(l)];
    p.device.experts += expert_bytes[static_cast<size_t>(l)];
    ++p.device.n_experts;
  };
  for (int64_t l = 0; l < n_layers; ++l) {
    if (forced[static_cast<size_t>(l)] != Forced::kDevice) continue;
    const int64_t E = static_cast<int64_t>(p.device_slot[static_cast<size_t>(l)].size());
    if (used + expert_bytes[static_cast<size_t>(l)] * static_cast<size_t>(E) > budget)
      throw_error("-ot sends the routed experts of layer %lld to %s, but they do not fit in its budget of %s",
                  static_cast<long long>(l), in.device_name.c_str(), format_bytes(static_cast<double>(budget)).c_str());
    for (int64_t e = 0; e < E; ++e) place(l, e);
  }

  // The free experts, most used first (ties: layer, then expert order).
  struct Candidate {
    int64_t layer, expert;
    uint64_t count;
  };
  std::vector<Candidate> free;
  for (int64_t l = 0; l < n_layers; ++l) {
    if (forced[static_cast<size_t>(l)] != Forced::kNone) continue;
    for (int64_t e = 0; e < static_cast<int64_t>(p.device_slot[static_cast<size_t>(l)].size()); ++e)
      free.push_back({l, e, in.stats ? in.stats->at(l, e) : 0});
  }
  p.from_stats = in.stats != nullptr;
  std::stable_sort(free.begin(), free.end(), [](const Candidate& a, const Candidate& b) { return a.count > b.count; });
  for (const Candidate& c : free)
    if (used + expert_bytes[static_cast<size_t>(c.layer)] <= budget) place(c.layer, c.expert);

  // Matrix order on the device follows expert order within a layer, so the
  // compacted tensors keep the file's order.
  for (auto& slots : p.device_slot) {
    int32_t k = 0;
    for (int32_t& s : slots)
      if (s >= 0) s = k++;
  }
  p.host = {0, all_experts - p.device.experts, 0, p.total_experts - p.device.n_experts};
  return p;
}

std::string ExpertPlacement::describe() const {
  if (!device_active) {
    std::string s = strfmt("placement: everything on the %s: weights %s in %s (%lld routed experts), "
                           "KV cache %s\n",
                           host_name.c_str(), format_bytes(static_cast<double>(host.every_token + host.experts)).c_str(),
                           host_memory.c_str(),
                           static_cast<long long>(total_experts), format_bytes(static_cast<double>(host.kv)).c_str());
    if (!note.empty()) s = "placement: " + note + "\n" + s;
    return s;
  }
  std::string s = strfmt(
      "placement: %s holds %s: attention, dense and shared weights %s, routed experts %lld of %lld (%s), KV cache %s "
      "(budget %s%s)\n",
      device_name.c_str(), format_bytes(static_cast<double>(device.total())).c_str(),
      format_bytes(static_cast<double>(device.every_token)).c_str(), static_cast<long long>(device.n_experts),
      static_cast<long long>(total_experts), format_bytes(static_cast<double>(device.experts)).c_str(),
      format_bytes(static_cast<double>(device.kv)).c_str(),
      budget < 0 ? "unlimited" : format_bytes(static_cast<double>(budget)).c_str(),
      from_stats ? "; experts ranked by --expert-stats" : "");
  s += strfmt("placement: %s computes %lld routed experts (%s) from %s\n", host_name.c_str(),
              static_cast<long long>(host.n_experts), format_bytes(static_cast<double>(host.experts)).c_str(),
              host_memory.c_str());
  // Per layer, in runs of equal counts: "layers 1-12 64/64, layer 13 20/64, layers 14-26 0/64".
  std::string runs;
  for (size_t l = 0; l < device_slot.size();) {
    if (device_slot[l].empty()) {
      ++l;
      continue;
    }
    const int64_t n = static_cast<int64_t>(device_slot[l].size()) - n_host_experts(static_cast<int64_t>(l));
    size_t end = l + 1;
    while (end < device_slot.size() && device_slot[end].size() == device_slot[l].size() &&
           static_cast<int64_t>(device_slot[end].size()) - n_host_experts(static_cast<int64_t>(end)) == n)
      ++end;
    runs += strfmt("%s%s %zu%s %lld/%zu", runs.empty() ? "" : ", ", end - l > 1 ? "layers" : "layer", l,
                   end - l > 1 ? strfmt("-%zu", end - 1).c_str() : "", static_cast<long long>(n), device_slot[l].size());
    l = end;
  }
  if (!runs.empty()) s += "placement: routed experts on " + device_name + ": " + runs + "\n";
  return s;
}

nlohmann::json ExpertPlacement::to_json() const {
  auto usage = [](const Usage& u) {
    return nlohmann::json{{"every_token_bytes", u.every_token}, {"routed_expert_bytes", u.experts},
                          {"kv_cache_bytes", u.kv}, {"routed_experts", u.n_experts}};
  };
  nlohmann::json per_layer = nlohmann::json::array();
  for (size_t l = 0; l < device_slot.size(); ++l)
    per_layer.push_back(device_slot[l].empty()
                            ? 0
                            : static_cast<int64_t>(device_slot[l].size()) - n_host_experts(static_cast<int64_t>(l)));
  nlohmann::json j{{"host", host_name},
                   {"device", device_active ? nlohmann::json(device_name) : nlohmann::json(nullptr)},
                   {"budget_bytes", budget},
                   {"routed_experts", total_experts},
                   {"ranked_by_stats", from_stats},
                   {"host_usage", usage(host)},
                   {"device_usage", usage(device)},
                   {"device_experts_per_layer", per_layer}};
  if (!note.empty()) j["note"] = note;
  return j;
}

}  // namespace moe
