// The expert placement planner, the routing statistics file and the MoE
// dispatch (sorting by expert, the split between device and host), on
// hand-made inputs whose right answer is known.
#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "runtime/expert_placement.h"
#include "runtime/expert_stats.h"
#include "runtime/moe_dispatch.h"
#include "test_util.h"

using namespace moe;

namespace {

constexpr size_t kMiB = size_t{1} << 20;

// A model of 4 layers (layer 0 dense) with 8 experts of 3 MiB (1 MiB per
// matrix) per MoE layer, 10 MiB of weights every token uses.
std::vector<TensorFootprint> toy_model() {
  std::vector<TensorFootprint> t;
  t.push_back({"token_embd.weight", -1, TensorRole::kEveryToken, 4 * kMiB, 0});
  t.push_back({"output.weight", -1, TensorRole::kEveryToken, 3 * kMiB, 0});
  t.push_back({"token_embd.weight", -1, TensorRole::kEveryToken, 4 * kMiB, 0});  // tied head: counted once
  for (int l = 0; l < 4; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    t.push_back({b + "attn_q_a.weight", l, TensorRole::kEveryToken, kMiB / 2, 0});
    t.push_back({b + "ffn_norm.weight", l, TensorRole::kEveryToken, kMiB / 4, 0});
    if (l == 0) continue;
    for (const char* m : {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"})
      t.push_back({b + m, l, TensorRole::kRoutedExperts, 8 * kMiB, 8});
  }
  return t;
}
// 7 + 4 * 0.75 = 10 MiB every token.
constexpr size_t kEveryToken = 10 * kMiB;
constexpr size_t kExpert = 3 * kMiB;

PlacementInputs device_inputs(int64_t budget) {
  PlacementInputs in;
  in.device_name = "CPU-device";
  in.budget = budget;
  in.kv_bytes = 2 * kMiB;
  return in;
}

int64_t on_device(const ExpertPlacement& p, int64_t layer) {
  return static_cast<int64_t>(p.device_experts(layer).size());
}

}  // namespace

TEST_CASE("placement: without a device everything stays on the host") {
  PlacementInputs in;
  in.kv_bytes = 2 * kMiB;
  const ExpertPlacement p = plan_expert_placement(toy_model(), 4, in);
  CHECK_FALSE(p.device_active);
  CHECK(p.host.every_token == kEveryToken);
  CHECK(p.host.experts == 24 * kExpert);
  CHECK(p.host.n_experts == 24);
  CHECK(p.host.kv == 2 * kMiB);
  CHECK(p.total_experts == 24);
  CHECK_FALSE(p.on_device(1, 0));
  CHECK(p.describe().find("everything on the CPU") != std::string::npos);
}

TEST_CASE("placement: an unlimited device takes everything") {
  const ExpertPlacement p = plan_expert_placement(toy_model(), 4, device_inputs(-1));
  REQUIRE(p.device_active);
  CHECK(p.device.every_token == kEveryToken);
  CHECK(p.device.kv == 2 * kMiB);
  CHECK(p.device.n_experts == 24);
  CHECK(p.host.n_experts == 0);
  CHECK(p.device_slot[0].empty());  // the dense layer has no experts
  for (int l = 1; l < 4; ++l)
    for (int e = 0; e < 8; ++e) CHECK(p.device_slot[size_t(l)][size_t(e)] == e);
}

TEST_CASE("placement: a budget fills layer after layer without statistics, and the plan names the bytes") {
  // Room for the fixed part and 11 experts: layer 1 whole, 3 of layer 2.
  const ExpertPlacement p = plan_expert_placement(toy_model(), 4, device_inputs(int64_t(kEveryToken + 2 * kMiB + 11 * kExpert + kMiB)));
  REQUIRE(p.device_active);
  CHECK(on_device(p, 1) == 8);
  CHECK(on_device(p, 2) == 3);
  CHECK(on_device(p, 3) == 0);
  CHECK(p.device_experts(2) == std::vector<int32_t>{0, 1, 2});
  CHECK(p.device.total() <= size_t(p.budget));
  CHECK(p.host.n_experts == 13);
  CHECK(p.host.experts == 13 * kExpert);
  const std::string d = p.describe();
  CAPTURE(d);
  CHECK(d.find("CPU-device holds") != std::string::npos);
  CHECK(d.find("attention, dense and shared weights 10.0 MiB") != std::string::npos);
  CHECK(d.find("routed experts 11 of 24 (33.0 MiB)") != std::string::npos);
  CHECK(d.find("KV cache 2.0 MiB") != std::string::npos);
  CHECK(d.find("CPU computes 13 routed experts (39.0 MiB)") != std::string::npos);
  CHECK(d.find("layer 1 8/8, layer 2 3/8, layer 3 0/8") != std::string::npos);
  const nlohmann::json j = p.to_json();
  CHECK(j["device_usage"]["routed_experts"] == 11);
  CHECK(j["device_experts_per_layer"] == nlohmann::json({0, 8, 3, 0}));
}

TEST_CASE("placement: a budget below the fixed part runs everything on the host, saying why") {
  const ExpertPlacement p = plan_expert_placement(toy_model(), 4, device_inputs(int64_t(5 * kMiB)));
  CHECK_FALSE(p.device_active);
  CHECK(p.note.find("cannot hold") != std::string::npos);
  CHECK(p.describe().find(p.note) != std::string::npos);
  CHECK(p.host.n_experts == 24);
}

TEST_CASE("placement: --cpu-moe, --n-cpu-moe and -ot force experts to a side") {
  PlacementInputs in = device_inputs(-1);
  in.options.cpu_moe = true;
  ExpertPlacement p = plan_expert_placement(toy_model(), 4, in);
  CHECK(p.device_active);
  CHECK(p.device.n_experts == 0);
  CHECK(p.host.n_experts == 24);

  in = device_inputs(-1);
  in.options.n_cpu_moe = 3;  // layers 0, 1, 2 (llama.cpp counts from layer 0, dense ones included)
  p = plan_expert_placement(toy_model(), 4, in);
  CHECK(on_device(p, 1) == 0);
  CHECK(on_device(p, 2) == 0);
  CHECK(on_device(p, 3) == 8);

  in = device_inputs(-1);
  in.options.overrides = {"blk\\.3\\.ffn_.*_exps=CPU,blk\\.1\\.=CUDA0"};
  p = plan_expert_placement(toy_model(), 4, in);
  CHECK(on_device(p, 1) == 8);
  CHECK(on_device(p, 2) == 8);
  CHECK(on_device(p, 3) == 0);

  // A device override wins over the budget order: layer 3 first.
  in = device_inputs(int64_t(kEveryToken + 2 * kMiB + 8 * kExpert));
  in.options.overrides = {"blk\\.3\\.ffn=CUDA0"};
  p = plan_expert_placement(toy_model(), 4, in);
  CHECK(on_device(p, 3) == 8);
  CHECK(on_device(p, 1) == 0);
}

TEST_CASE("placement: bad -ot rules are clear errors naming the rule") {
  PlacementInputs in = device_inputs(-1);
  in.options.overrides = {"attn_q_a=CPU"};
  CHECK_THROWS_WITH_AS(plan_expert_placement(toy_model(), 4, in), doctest::Contains("only routed expert tensors"),
                       Error);
  in.options.overrides = {"exps"};
  CHECK_THROWS_WITH_AS(plan_expert_placement(toy_model(), 4, in), doctest::Contains("REGEX=BACKEND"), Error);
  in.options.overrides = {"exps=TPU"};
  CHECK_THROWS_WITH_AS(plan_expert_placement(toy_model(), 4, in), doctest::Contains("unknown backend 'TPU'"), Error);
  in.options.overrides = {"ex(ps=CPU"};
  CHECK_THROWS_WITH_AS(plan_expert_placement(toy_model(), 4, in), doctest::Contains("bad regular expression"), Error);
  in.options.overrides = {"blk\\.2\\.ffn_up_exps=CPU"};
  CHECK_THROWS_WITH_AS(plan_expert_placement(toy_model(), 4, in), doctest::Contains("placed together"), Error);
  in = device_inputs(int64_t(kEveryToken + 2 * kMiB + kExpert));
  in.options.overrides = {"blk\\.2\\.=CUDA0"};
  CHECK_THROWS_WITH_AS(plan_expert_placement(toy_model(), 4, in), doctest::Contains("do not fit"), Error);
  // Without a device, a rule for one has nowhere to go; CPU rules change nothing.
  PlacementInputs host_only;
  host_only.options.overrides = {"exps=CUDA0"};
  CHECK_THROWS_WITH_AS(plan_expert_placement(toy_model(), 4, host_only), doctest::Contains("no device"), Error);
  host_only.options.overrides = {"exps=CPU"};
  CHECK_NOTHROW(plan_expert_placement(toy_model(), 4, host_only));
}

TEST_CASE("placement: routing statistics put the most used experts on the device") {
  ExpertStats s;
  s.n_layers = 4, s.n_experts = 8, s.top_k = 2, s.tokens = 100;
  s.counts.assign(32, 1);
  // The hot experts: layer 3 expert 5, layer 2 expert 7, layer 1 expert 6, layer 3 expert 0.
  s.counts[3 * 8 + 5] = 90, s.counts[2 * 8 + 7] = 80, s.counts[1 * 8 + 6] = 70, s.counts[3 * 8 + 0] = 60;
  PlacementInputs in = device_inputs(int64_t(kEveryToken + 2 * kMiB + 4 * kExpert));
  in.stats = &s;
  const ExpertPlacement p = plan_expert_placement(toy_model(), 4, in);
  CHECK(p.from_stats);
  CHECK(p.device_experts(1) == std::vector<int32_t>{6});
  CHECK(p.device_experts(2) == std::vector<int32_t>{7});
  CHECK(p.device_experts(3) == std::vector<int32_t>{0, 5});  // matrix order follows expert order
  CHECK(p.device_slot[3][5] == 1);
  // The same budget without statistics keeps the first four of layer 1.
  in.stats = nullptr;
  CHECK(plan_expert_placement(toy_model(), 4, in).device_experts(1) == std::vector<int32_t>{0, 1, 2, 3});
  // Statistics of another shape are refused.
  s.n_experts = 4;
  s.counts.resize(16);
  in.stats = &s;
  CHECK_THROWS_WITH_AS(plan_expert_placement(toy_model(), 4, in), doctest::Contains("experts per layer"), Error);
}

TEST_CASE("expert stats: the file round-trips, and bad files name the field") {
  ExpertStats s;
  s.model = "toy \"model\"";
  s.n_layers = 2, s.n_experts = 3, s.top_k = 2, s.tokens = 7;
  s.counts = {0, 0, 0, 5, 6, 3};
  const std::string dir = test::temp_dir(), path = dir + "/stats.json";
  s.write(path);
  const ExpertStats r = ExpertStats::read(path);
  CHECK(r.model == s.model);
  CHECK(r.n_layers == 2);
  CHECK(r.n_experts == 3);
  CHECK(r.top_k == 2);
  CHECK(r.tokens == 7);
  CHECK(r.counts == s.counts);
  CHECK(r.at(1, 2) == 3);

  auto bad = [&](const std::string& text) {
    test::write_file(path, text.data(), text.size());
    return ExpertStats::read(path);
  };
  CHECK_THROWS_WITH_AS(ExpertStats::read(dir + "/absent.json"), doctest::Contains("absent.json"), Error);
  CHECK_THROWS_WITH_AS(bad("{"), doctest::Contains("not JSON"), Error);
  CHECK_THROWS_WITH_AS(bad("{\"format\": \"x\"}"), doctest::Contains("format"), Error);
  const std::string head = "{\"format\": \"moe.cpp expert stats\", \"version\": 1, \"n_layers\": 2, \"n_experts\": 3, "
                           "\"top_k\": 2, \"tokens\": 7, ";
  CHECK_THROWS_WITH_AS(bad(head + "\"counts\": [[1,2,3]]}"), doctest::Contains("n_layers = 2 rows"), Error);
  CHECK_THROWS_WITH_AS(bad(head + "\"counts\": [[1,2,3],[1,2]]}"), doctest::Contains("counts[1]"), Error);
  CHECK_THROWS_WITH_AS(bad(head + "\"counts\": [[1,2,3],[1,-2,3]]}"), doctest::Contains("not a count"), Error);
  CHECK_THROWS_WITH_AS(bad("{\"format\": \"moe.cpp expert stats\", \"version\": 2}"), doctest::Contains("version"),
                       Error);
}

TEST_CASE("byte sizes: --gpu-mem spellings") {
  CHECK(parse_byte_size("300000000") == 300000000);
  CHECK(parse_byte_size("512M") == 512ll << 20);
  CHECK(parse_byte_size("8G") == 8ll << 30);
  CHECK(parse_byte_size("1.5GiB") == 3ll << 29);
  CHECK(parse_byte_size("64kb") == 64 << 10);
  CHECK_THROWS_WITH_AS(parse_byte_size("lots"), doctest::Contains("'lots' is not a size"), Error);
  CHECK_THROWS_WITH_AS(parse_byte_size("8X"), doctest::Contains("unknown unit"), Error);
  CHECK_THROWS_AS(parse_byte_size("-1G"), Error);
  CHECK(format_bytes(1536) == "1.5 KiB");
  CHECK(format_bytes(3.0 * (1 << 30)) == "3.00 GiB");
}

TEST_CASE("dispatch: slots sorted by expert, then split between device and host") {
  std::mt19937 rng(3);
  const int64_t E = 9, K = 3;
  for (int64_t n : {1, 2, 7, 40}) {
    CAPTURE(n);
    std::vector<int32_t> ids(size_t(n * K));
    for (int64_t t = 0; t < n; ++t) {  // k distinct experts per token
      std::vector<int32_t> all(static_cast<size_t>(E));
      for (int32_t e = 0; e < E; ++e) all[size_t(e)] = e;
      std::shuffle(all.begin(), all.end(), rng);
      for (int64_t k = 0; k < K; ++k) ids[size_t(t * K + k)] = all[size_t(k)];
    }
    ExpertDispatch d;
    std::vector<int64_t> scratch;
    moe_dispatch_sort(ids.data(), n, K, E, d, scratch);
    REQUIRE(d.n_positions() == n * K);
    // Every slot exactly once, in its expert's group, tokens ascending within a group.
    std::vector<int> seen(size_t(n * K), 0);
    int64_t next = 0;
    for (const ExpertGroup& g : d.groups) {
      CHECK(g.first == next);
      next += g.count;
      for (int64_t p = g.first; p < g.first + g.count; ++p) {
        const int32_t s = d.out_row[size_t(p)];
        ++seen[size_t(s)];
        CHECK(ids[size_t(s)] == g.expert);
        CHECK(d.in_row[size_t(p)] == s / K);
        if (p > g.first) CHECK(d.in_row[size_t(p)] > d.in_row[size_t(p - 1)]);
      }
    }
    CHECK(next == n * K);
    CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));

    // Experts 1, 4, 6 on the device (matrices 0, 1, 2); the rest on the host.
    const std::vector<int32_t> slot = {-1, 0, -1, -1, 1, -1, 2, -1, -1};
    DispatchSplit split;
    moe_dispatch_split(d, slot, n, split);
    std::vector<int> covered(size_t(n * K), 0);
    for (const ExpertGroup& g : split.device.groups)
      for (int64_t p = g.first; p < g.first + g.count; ++p) {
        const int32_t s = split.device.out_row[size_t(p)];
        ++covered[size_t(s)];
        CHECK(slot[size_t(ids[size_t(s)])] == g.expert);
        CHECK(split.device.in_row[size_t(p)] == s / K);
      }
    for (const ExpertGroup& g : split.host.groups)
      for (int64_t p = g.first; p < g.first + g.count; ++p) {
        const int32_t row = split.host.out_row[size_t(p)];
        const int32_t s = split.host_slots[size_t(row)];
        ++covered[size_t(s)];
        CHECK(slot[size_t(g.expert)] == -1);
        CHECK(ids[size_t(s)] == g.expert);
        CHECK(split.host_tokens[size_t(split.host.in_row[size_t(p)])] == s / K);
      }
    CHECK(std::all_of(covered.begin(), covered.end(), [](int c) { return c == 1; }));
    // Each host token is gathered once.
    std::vector<int32_t> tokens = split.host_tokens;
    std::sort(tokens.begin(), tokens.end());
    CHECK(std::adjacent_find(tokens.begin(), tokens.end()) == tokens.end());
  }
}
