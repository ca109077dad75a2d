// Fuzz target: GgufFile::parse on arbitrary bytes, then every accessor a
// loader would use, then what the loaders build from the metadata: the
// tokenizer (Tokenizer::from_gguf) and the chat template. Any input must give
// a result or a moe::Error; the sanitizers catch everything else.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

using namespace moe;

namespace {

// Reads every element of a value the way the tools do (to_string walks
// nested arrays too).
void walk_value(const GgufValue& v) {
  (void)v.to_string(4);
  if (!v.is_array()) return;
  switch (v.array_type()) {
    case GgufType::STRING: (void)v.strings().size(); break;
    case GgufType::ARRAY:
      for (const GgufValue& a : v.arrays()) walk_value(a);
      break;
    default:
      for (uint64_t i = 0; i < v.array_size() && i < 64; ++i) {
        try { (void)v.int_at(i); } catch (const Error&) {}  // throws for float arrays
        try { (void)v.float_at(i); } catch (const Error&) {}
      }
  }
}

template <typename F>
void call(F&& f) {
  try { f(); } catch (const Error&) {}
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    GgufFile f = GgufFile::parse(data, size, "fuzz.gguf");
    for (const GgufKv& kv : f.metadata()) {
      walk_value(kv.value);
      const std::string& k = kv.key;
      call([&] { (void)f.get_u32(k); });
      call([&] { (void)f.get_i32(k); });
      call([&] { (void)f.get_u64(k); });
      call([&] { (void)f.get_f32(k); });
      call([&] { (void)f.get_bool(k); });
      call([&] { (void)f.get_string(k); });
      call([&] { (void)f.get_string_array(k); });
      call([&] { (void)f.get_f32_array(k); });
      call([&] { (void)f.get_i32_array(k); });
      call([&] { (void)f.get_u32_opt(k); });
      call([&] { (void)f.get_string_opt(k); });
      call([&] { (void)f.get_bool_opt(k); });
    }
    call([&] { (void)f.get_u32_opt("absent.key"); });
    call([&] { (void)f.get_string("absent.key"); });
    // Touch the first and last byte of each tensor's data: the reader
    // promised they lie inside the file.
    uint64_t sum = 0;
    for (const GgufTensorInfo& t : f.tensors()) {
      (void)t.shape_string();
      (void)t.n_rows();
      if (f.find_tensor(t.name) != &t) __builtin_trap();
      if (t.nbytes > 0) sum += t.data[0] + t.data[t.nbytes - 1];
    }
    call([&] { (void)f.tensor("absent.tensor"); });
    // A model file's vocabulary is as hostile as the rest of it.
    call([&] {
      const Tokenizer tok = Tokenizer::from_gguf(f);
      const std::vector<int32_t> ids = tok.encode("Hello <｜User｜> wörld 123", true, true);
      (void)tok.decode(ids);
    });
    call([&] {
      if (auto src = f.get_string_opt("tokenizer.chat_template"))
        (void)ChatTemplate::for_source(*src, "<s>", "</s>").render({{"user", "Hi"}}, true);
    });
    return static_cast<int>(sum & 0);
  } catch (const Error&) {
    return 0;
  }
}
