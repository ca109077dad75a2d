// Fuzz target: the batch-input parser (src/chat/batch_input.h) on arbitrary
// bytes: split into lines, detect the format, parse every line as JSONL and
// as text. The parser promises an error record per bad line, never an
// exception, so any exception escaping here is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "chat/batch_input.h"

using namespace moe;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_batch_line: %s\n", what);
  std::abort();
}

void check(const BatchLine& l) {
  switch (l.kind) {
    case BatchLine::request:
      if (!l.error.empty()) fail("a request carries an error");
      // A request has something to run: a prompt or a conversation.
      if (l.req.prompt.empty() && l.req.messages.empty()) fail("a request with neither prompt nor messages");
      if (l.req.n_predict && *l.req.n_predict < -1) fail("n_predict < -1 accepted");
      (void)l.req.id.dump();
      break;
    case BatchLine::invalid:
      if (l.error.empty()) fail("an invalid line has no error message");
      break;
    case BatchLine::blank: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string_view> lines = batch_split_lines(input);
  const BatchFormat detected = batch_detect_format(lines);
  if (detected == BatchFormat::automatic) fail("batch_detect_format returned automatic");
  int64_t line_no = 0;
  for (std::string_view line : lines) {
    ++line_no;
    if (line.find('\n') != std::string_view::npos) fail("a split line contains a newline");
    check(batch_parse_line(line, line_no, BatchFormat::jsonl));
    check(batch_parse_line(line, line_no, BatchFormat::text));
  }
  return 0;
}
