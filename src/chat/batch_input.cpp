#include "chat/batch_input.h"

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace moe {

namespace {

using nlohmann::json;

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\r\f\v") == std::string_view::npos; }

const char* type_name(const json& v) { return v.type_name(); }

BatchLine fail(BatchLine r, std::string why) {
  r.kind = BatchLine::invalid;
  r.error = std::move(why);
  return r;
}

// Fills r.req from a parsed object, or returns an error naming the key.
BatchLine from_object(const json& o, BatchLine r) {
  BatchRequest& q = r.req;
  if (auto it = o.find("id"); it != o.end()) q.id = *it;
  const auto p = o.find("prompt");
  const auto m = o.find("messages");
  if (p == o.end() && m == o.end()) return fail(std::move(r), "missing \"prompt\" (a string) or \"messages\" (an array)");
  if (p != o.end() && m != o.end()) return fail(std::move(r), "give either \"prompt\" or \"messages\", not both");
  if (p != o.end()) {
    if (!p->is_string()) return fail(std::move(r), strfmt("\"prompt\" must be a string, found %s", type_name(*p)));
    q.prompt = p->get<std::string>();
    if (q.prompt.empty()) return fail(std::move(r), "\"prompt\" is empty");
  } else {
    if (!m->is_array() || m->empty())
      return fail(std::move(r), strfmt("\"messages\" must be a non-empty array, found %s", m->is_array() ? "[]" : type_name(*m)));
    for (size_t i = 0; i < m->size(); ++i) {
      const json& msg = (*m)[i];
      if (!msg.is_object()) return fail(std::move(r), strfmt("messages[%zu] must be an object, found %s", i, type_name(msg)));
      const auto role = msg.find("role"), content = msg.find("content");
      if (role == msg.end() || !role->is_string())
        return fail(std::move(r), strfmt("messages[%zu].role must be a string", i));
      if (content == msg.end() || !content->is_string())
        return fail(std::move(r), strfmt("messages[%zu].content must be a string", i));
      const std::string rs = role->get<std::string>();
      if (rs != "system" && rs != "user" && rs != "assistant")
        return fail(std::move(r), strfmt("messages[%zu].role is '%s', expected system, user or assistant", i, rs.c_str()));
      q.messages.push_back({rs, content->get<std::string>()});
    }
  }
  if (auto it = o.find("n_predict"); it != o.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < -2)
      return fail(std::move(r), strfmt("\"n_predict\" must be an integer >= -2 (-1, -2: no limit), found %s",
                                       it->dump().c_str()));
    q.n_predict = it->get<int64_t>();
  }
  if (auto it = o.find("temperature"); it != o.end()) {
    if (!it->is_number()) return fail(std::move(r), strfmt("\"temperature\" must be a number, found %s", type_name(*it)));
    q.temperature = it->get<float>();
  }
  if (auto it = o.find("seed"); it != o.end()) {
    if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
      return fail(std::move(r), strfmt("\"seed\" must be an integer >= 0, found %s", it->dump().c_str()));
    q.seed = it->get<uint64_t>();
  }
  if (auto it = o.find("stop"); it != o.end()) {
    if (it->is_string()) {
      q.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const json& s : *it) {
        if (!s.is_string()) return fail(std::move(r), strfmt("\"stop\" entries must be strings, found %s", type_name(s)));
        q.stop.push_back(s.get<std::string>());
      }
    } else {
      return fail(std::move(r), strfmt("\"stop\" must be a string or an array of strings, found %s", type_name(*it)));
    }
    for (const auto& s : q.stop)
      if (s.empty()) return fail(std::move(r), "\"stop\" strings must not be empty");
  }
  for (auto it = o.begin(); it != o.end(); ++it)
    if (it.key() != "id" && it.key() != "prompt" && it.key() != "messages" && it.key() != "n_predict" &&
        it.key() != "temperature" && it.key() != "seed" && it.key() != "stop")
      q.unknown_keys.push_back(it.key());
  r.kind = BatchLine::request;
  return r;
}

}  // namespace

std::vector<std::string_view> batch_split_lines(std::string_view input) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < input.size()) {
    size_t end = input.find('\n', start);
    if (end == std::string_view::npos) end = input.size();
    std::string_view line = input.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

BatchFormat batch_detect_format(const std::vector<std::string_view>& lines) {
  for (std::string_view l : lines) {
    if (is_blank(l)) continue;
    const size_t b = l.find_first_not_of(" \t");
    return l[b] == '{' ? BatchFormat::jsonl : BatchFormat::text;
  }
  return BatchFormat::text;
}

BatchLine batch_parse_line(std::string_view line, int64_t line_no, BatchFormat format) {
  MOE_ASSERT(format != BatchFormat::automatic, "batch_parse_line needs a resolved format");
  BatchLine r;
  r.req.line = line_no;
  if (format == BatchFormat::text) r.req.id = line_no;
  if (line.size() > kMaxBatchLineBytes)
    return fail(std::move(r), strfmt("line is %zu bytes, more than the limit of %zu", line.size(), kMaxBatchLineBytes));
  if (is_blank(line)) return r;  // blank
  if (!utf8_is_valid(line)) return fail(std::move(r), "line is not valid UTF-8");
  if (format == BatchFormat::text) {
    r.req.prompt = std::string(line);
    r.kind = BatchLine::request;
    return r;
  }
  json o = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (o.is_discarded()) {
    // Parse again for the message: where and why it failed. Any json
    // exception, not only parse_error: a number too large for a double
    // ("1E400") throws out_of_range.
    try {
      const json again = json::parse(line);
      (void)again;
    } catch (const json::exception& e) {
      return fail(std::move(r), strfmt("invalid JSON: %s", e.what()));
    }
    return fail(std::move(r), "invalid JSON");
  }
  if (!o.is_object()) return fail(std::move(r), strfmt("expected a JSON object, found %s", type_name(o)));
  return from_object(o, std::move(r));
}

BatchFormat batch_format_from_name(std::string_view name) {
  if (name == "auto") return BatchFormat::automatic;
  if (name == "jsonl") return BatchFormat::jsonl;
  if (name == "text") return BatchFormat::text;
  throw_error("unknown batch format '%s' (expected auto, jsonl or text)", std::string(name).c_str());
}

}  // namespace moe
