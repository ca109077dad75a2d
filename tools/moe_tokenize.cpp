// moe-tokenize: prints the token ids of a text as a JSON array on one line,
// using the tokenizer stored in a GGUF file (a vocabulary-only file is enough:
// no tensors are read).
//
//   moe-tokenize -m model.gguf --text "Hello world"        # [0,19923,2058]
//   moe-tokenize -m model.gguf --file prompt.txt --parse-special --no-bos
//
// BOS is added when the model asks for it (tokenizer.ggml.add_bos_token);
// --no-bos adds nothing. Special-token text such as "<｜User｜>" stays ordinary
// text unless --parse-special is given. Any error prints
// "moe-tokenize: error: ..." and exits 1.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <exception>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) moe::throw_error("cannot read '%s'", path.c_str());
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) moe::throw_error("error reading '%s'", path.c_str());
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-tokenize: print the token ids of a text as a JSON array"};
  std::string model, text, file;
  bool parse_special = false, no_bos = false;
  app.add_option("-m,--model", model, "GGUF file with the tokenizer (a vocabulary-only file will do)")->required();
  auto* text_opt = app.add_option("--text", text, "text to tokenize");
  auto* file_opt = app.add_option("--file", file, "file whose bytes to tokenize");
  text_opt->excludes(file_opt);
  app.add_flag("--parse-special", parse_special, "turn special-token text such as <｜User｜> into those tokens");
  app.add_flag("--no-bos", no_bos, "add no BOS/EOS even where the model asks for them");
  try {
    app.parse(argc, argv);
    if (text_opt->count() + file_opt->count() != 1) throw CLI::RequiredError("--text or --file");
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "moe-tokenize: error: %s\nRun with --help for more information.\n", e.what());
    return 1;
  }
  try {
    if (file_opt->count()) text = read_text_file(file);
    const moe::Tokenizer tok = moe::Tokenizer::from_gguf(moe::GgufFile::open(model));
    const std::vector<int32_t> ids = tok.encode(text, !no_bos, parse_special);
    std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe-tokenize: error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "moe-tokenize: error: unknown exception\n");
  }
  return 1;
}
