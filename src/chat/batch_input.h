// Batch input: one prompt per line, as JSON Lines or plain text, parsed line
// by line into a request or an error for that line (never an exception), so
// one bad line costs only its own answer.
//
// JSONL line: {"id": any JSON value, "prompt": "text"} or
//             {"id": ..., "messages": [{"role": "user", "content": "..."}, ...]}
//             optional: "n_predict" (integer >= -2; -1 and -2: no limit),
//             "temperature" (number), "seed" (integer >= 0), "stop" (string
//             or array of strings). Other keys are listed in unknown_keys
//             (the batch mode warns about each once).
// Text line:  the whole line is the prompt; the id is the line number.
//
// Detection (BatchFormat::automatic): JSONL when the first non-empty line
// starts with '{', plain text otherwise. A JSONL file with a malformed line is
// still JSONL (the line gets an error); --batch-format text forces text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"

namespace moe {

enum class BatchFormat { automatic, jsonl, text };

// Lines longer than this are refused (error record) without being parsed.
inline constexpr size_t kMaxBatchLineBytes = size_t(1) << 20;

struct BatchRequest {
  nlohmann::json id;            // as given; the line number for text input; null when absent
  int64_t line = 0;             // 1-based line in the input
  std::string prompt;           // raw prompt (when messages is empty)
  std::vector<ChatMessage> messages;  // chat request: rendered through the model's template
  std::optional<int64_t> n_predict;
  std::optional<float> temperature;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<std::string> unknown_keys;  // keys this format does not define

  bool is_chat() const { return !messages.empty(); }
};

struct BatchLine {
  enum Kind { request, invalid, blank };
  Kind kind = blank;
  BatchRequest req;   // kind == request; for invalid lines, id and line are filled when known
  std::string error;  // kind == invalid
};

// Splits the input into lines ("\n" or "\r\n"); a final line without a newline counts.
std::vector<std::string_view> batch_split_lines(std::string_view input);

// Resolves BatchFormat::automatic for these lines.
BatchFormat batch_detect_format(const std::vector<std::string_view>& lines);

// Parses one line (1-based line_no). `format` must be jsonl or text.
BatchLine batch_parse_line(std::string_view line, int64_t line_no, BatchFormat format);

BatchFormat batch_format_from_name(std::string_view name);  // "auto", "jsonl", "text"; throws otherwise

}  // namespace moe
