// fuzz_make_seeds DIR [MODEL.gguf]: writes small valid inputs for the fuzz
// targets with our own writers, so the fuzzers start from files that parse all
// the way through (the fixture models are megabytes, mostly tensor data):
//   DIR/gguf/*.gguf           every metadata value type, nested arrays, tensors
//                             of several types, a non-default alignment; with
//                             MODEL, its tokenizer.* keys alone (vocab-only),
//                             whole and cut down to a few hundred tokens
//   DIR/safetensors/*.safetensors  a few dtypes, metadata, a scalar
//   DIR/prompt_cache/*        saved prompt caches of 0, 1 and 5 tokens in the
//                             shape fuzz_prompt_cache expects
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "prompt_cache_shape.h"

using namespace moe;

namespace {

void write_gguf(const std::string& path, uint32_t alignment, bool with_tensors) {
  GgufWriter w(path, alignment);
  w.set("general.architecture", GgufValue::string("deepseek2"));
  if (alignment != 32) w.set("general.alignment", GgufValue::u32(alignment));
  w.set("k.u8", GgufValue::u8(7));
  w.set("k.i8", GgufValue::i8(-7));
  w.set("k.u16", GgufValue::u16(700));
  w.set("k.i16", GgufValue::i16(-700));
  w.set("k.u32", GgufValue::u32(70000));
  w.set("k.i32", GgufValue::i32(-70000));
  w.set("k.u64", GgufValue::u64(uint64_t(1) << 40));
  w.set("k.i64", GgufValue::i64(-(int64_t(1) << 40)));
  w.set("k.f32", GgufValue::f32(0.5f));
  w.set("k.f64", GgufValue::f64(-0.25));
  w.set("k.bool", GgufValue::boolean(true));
  w.set("k.str", GgufValue::string("héllo"));
  w.set("k.arr.i32", GgufValue::array(GgufType::INT32, std::vector<int32_t>{1, -2, 3}));
  w.set("k.arr.f32", GgufValue::array(GgufType::FLOAT32, std::vector<float>{1.5f, -2.5f}));
  w.set("k.arr.str", GgufValue::array_of_strings({"a", "", "<｜User｜>"}));
  w.set("k.arr.arr", GgufValue::array_of_arrays({GgufValue::array(GgufType::UINT8, std::vector<uint8_t>{1, 2}),
                                                 GgufValue::array_of_strings({"x"})}));
  if (with_tensors) {
    w.add_tensor("t.f32", GgmlType::F32, {4, 2});
    w.add_tensor("t.f16", GgmlType::F16, {8});
    w.add_tensor("t.q8_0", GgmlType::Q8_0, {32, 1});
    w.add_tensor("t.q4_k", GgmlType::Q4_K, {256});
  }
  w.begin();
  for (size_t i = 0; i < w.n_tensors(); ++i) {
    std::vector<uint8_t> bytes(w.tensor_nbytes(i), static_cast<uint8_t>(i + 1));
    w.write_tensor_data(bytes.data(), bytes.size());
  }
  w.finish();
}

// The tokenizer keys of `model` (and general.architecture), no tensors; with
// max_tokens, the vocabulary and merges cut to that many entries (merges
// naming dropped tokens stay: the loader must cope with them).
void write_vocab_only(const GgufFile& model, const std::string& path, size_t max_tokens) {
  GgufWriter w(path);
  for (const GgufKv& kv : model.metadata()) {
    if (kv.key != "general.architecture" && kv.key.rfind("tokenizer.", 0) != 0) continue;
    if (max_tokens > 0 && kv.value.is_array() && kv.value.array_size() > max_tokens) {
      if (kv.value.array_type() == GgufType::STRING) {
        const std::vector<std::string>& all = kv.value.strings();
        w.set(kv.key, GgufValue::array_of_strings(std::vector<std::string>(all.begin(), all.begin() + max_tokens)));
      } else if (gguf_scalar_size(kv.value.array_type()) > 0) {
        const size_t esz = gguf_scalar_size(kv.value.array_type());
        const std::vector<uint8_t>& raw = kv.value.raw();
        w.set(kv.key, GgufValue::array_raw(kv.value.array_type(), max_tokens,
                                           std::vector<uint8_t>(raw.begin(), raw.begin() + max_tokens * esz)));
      }
      continue;
    }
    w.set(kv.key, kv.value);
  }
  w.begin();
  w.finish();
}

void write_safetensors(const std::string& path, const std::string& header, size_t data_bytes) {
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>((n >> (8 * i)) & 0xff));
  f << header;
  for (size_t i = 0; i < data_bytes; ++i) f.put(static_cast<char>(i * 37));
  MOE_ASSERT(f.good(), "cannot write %s", path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: %s DIR [MODEL.gguf]\n", argv[0]);
    return 2;
  }
  try {
    const std::string dir = argv[1];
    std::filesystem::create_directories(dir + "/gguf");
    std::filesystem::create_directories(dir + "/safetensors");
    write_gguf(dir + "/gguf/seed-tensors.gguf", 32, true);
    write_gguf(dir + "/gguf/seed-align64.gguf", 64, true);
    write_gguf(dir + "/gguf/seed-metadata.gguf", 32, false);
    if (argc == 3) {
      const GgufFile model = GgufFile::open(argv[2]);
      write_vocab_only(model, dir + "/gguf/seed-vocab.gguf", 0);
      write_vocab_only(model, dir + "/gguf/seed-vocab-300.gguf", 300);
    }
    write_safetensors(dir + "/safetensors/seed-mixed.safetensors",
                      R"({"__metadata__":{"format":"pt"},)"
                      R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                      R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
                      R"("c":{"dtype":"F8_E4M3","shape":[2,1],"data_offsets":[22,24]},)"
                      R"("s":{"dtype":"F16","shape":[],"data_offsets":[24,26]}})",
                      26);
    write_safetensors(dir + "/safetensors/seed-empty.safetensors", "{}", 0);
    std::filesystem::create_directories(dir + "/prompt_cache");
    for (int n : {0, 1, 5}) {
      const PromptCacheShape s = fuzz_prompt_cache_shape();
      PromptCacheData d;
      for (int i = 0; i < n; ++i) d.tokens.push_back(3 * i);
      d.rows.assign(static_cast<size_t>(n) * 12, 0.5f);
      std::ofstream(dir + "/prompt_cache/seed-" + std::to_string(n), std::ios::binary) << encode_prompt_cache(s, d);
    }
    write_safetensors(dir + "/safetensors/seed-ints.safetensors",
                      R"({"i":{"dtype":"I64","shape":[1,2],"data_offsets":[0,16]},)"
                      R"("z":{"dtype":"U8","shape":[0,5],"data_offsets":[16,16]}})",
                      16);
  } catch (const Error& e) {
    std::fprintf(stderr, "fuzz_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
