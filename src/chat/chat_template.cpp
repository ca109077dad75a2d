#include "chat/chat_template.h"

#include "core/error.h"

namespace moe {

namespace {

bool contains(std::string_view s, std::string_view needle) { return s.find(needle) != std::string_view::npos; }

struct NamedFamily {
  ChatFamily family;
  const char* name;
};
constexpr NamedFamily kFamilies[] = {
    {ChatFamily::deepseek2, "deepseek2"}, {ChatFamily::deepseek25, "deepseek2.5"},
    {ChatFamily::deepseek3, "deepseek3"}, {ChatFamily::deepseek_r1, "deepseek-r1"},
    {ChatFamily::deepseek31, "deepseek3.1"}, {ChatFamily::deepseek32, "deepseek3.2"},
    {ChatFamily::deepseek4, "deepseek4"},
    {ChatFamily::chatml, "chatml"},       {ChatFamily::llama3, "llama3"},
    {ChatFamily::mistral, "mistral"},     {ChatFamily::kimi_k2, "kimi-k2"},
    {ChatFamily::glm4, "chatglm4"},
};

// Jinja's `trim` filter (Python str.strip()) on the ASCII whitespace it strips.
std::string trim(std::string_view s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

// Qwen2's template writes a fixed system turn when the conversation has none:
// {% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are ...<|im_end|>\n' }}
// Returns that prompt (the "\n" escapes of the Jinja string literal decoded).
std::string chatml_default_system(std::string_view jinja) {
  if (!contains(jinja, "!= 'system'") && !contains(jinja, "!= \"system\"")) return {};
  const std::string_view open = "<|im_start|>system\\n";
  const size_t b = jinja.find(open);
  if (b == std::string_view::npos) return {};
  const size_t start = b + open.size();
  const size_t e = jinja.find("<|im_end|>", start);
  if (e == std::string_view::npos) return {};
  const std::string_view raw = jinja.substr(start, e - start);
  if (contains(raw, "{") || contains(raw, "'") || contains(raw, "\"")) return {};  // not a plain literal
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\\' && i + 1 < raw.size() && raw[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else {
      out += raw[i];
    }
  }
  return out;
}

void check_role(const ChatMessage& m, size_t i, const char* family) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant")
    throw_error("chat message %zu: role '%s' is not supported by the %s template (expected system, user or assistant)",
                i, m.role.c_str(), family);
}

}  // namespace

std::optional<ChatFamily> chat_family_detect(std::string_view t) {
  // DeepSeek V2.5 / V3 / R1 / V3.1 share the full-width markers; V3.1 has a
  // `thinking` switch, R1 strips the reasoning of earlier answers, V3 (and
  // R1) join several system messages.
  if (contains(t, "<｜User｜>") && contains(t, "<｜Assistant｜>")) {
    // V4: its tool-call markup and its switch for earlier turns' reasoning.
    if (contains(t, "｜DSML｜") || contains(t, "drop_thinking")) return ChatFamily::deepseek4;
    if (contains(t, "thinking is defined") && contains(t, "</think>")) return ChatFamily::deepseek31;
    if (contains(t, "</think>")) return ChatFamily::deepseek_r1;
    if (contains(t, "is_first_sp")) return ChatFamily::deepseek3;
    return ChatFamily::deepseek25;
  }
  if (contains(t, "'Assistant: ' + message['content'] + eos_token") ||
      (contains(t, "'User: '") && contains(t, "'Assistant:'")))
    return ChatFamily::deepseek2;
  // Kimi K2 and GLM-4 (on the deepseek2 graph), as llama.cpp detects them.
  if (contains(t, "<|im_assistant|>assistant<|im_middle|>")) return ChatFamily::kimi_k2;
  if (contains(t, "[gMASK]<sop>")) return ChatFamily::glm4;
  if (contains(t, "<|im_start|>")) return ChatFamily::chatml;
  if (contains(t, "<|start_header_id|>") && contains(t, "<|end_header_id|>")) return ChatFamily::llama3;
  if (contains(t, "[INST]")) return ChatFamily::mistral;
  return std::nullopt;
}

std::optional<ChatFamily> chat_family_from_name(std::string_view name) {
  for (const auto& f : kFamilies)
    if (name == f.name) return f.family;
  return std::nullopt;
}

const char* chat_family_name(ChatFamily family) {
  for (const auto& f : kFamilies)
    if (family == f.family) return f.name;
  return "?";
}

std::string chat_family_names() {
  std::string s;
  for (const auto& f : kFamilies) s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s;
}

ChatTemplate::ChatTemplate(ChatFamily family, std::string bos, std::string eos, std::string default_system)
    : family_(family), bos_(std::move(bos)), eos_(std::move(eos)), default_system_(std::move(default_system)) {}

ChatTemplate ChatTemplate::for_source(std::string_view jinja, std::string bos, std::string eos) {
  const auto family = chat_family_detect(jinja);
  if (!family)
    throw_error("unrecognised chat template (%zu characters, starting '%.60s'); choose one with --chat-template: %s",
                jinja.size(), std::string(jinja.substr(0, 60)).c_str(), chat_family_names().c_str());
  std::string def = *family == ChatFamily::chatml ? chatml_default_system(jinja) : std::string();
  return ChatTemplate(*family, std::move(bos), std::move(eos), std::move(def));
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  switch (family_) {
    case ChatFamily::deepseek25:
    case ChatFamily::deepseek3:
    case ChatFamily::deepseek_r1: return render_deepseek(messages, add_generation_prompt);
    case ChatFamily::deepseek2: return render_deepseek2(messages, add_generation_prompt);
    case ChatFamily::deepseek31: return render_deepseek31(messages, add_generation_prompt);
    case ChatFamily::deepseek32: return render_deepseek32(messages);
    case ChatFamily::deepseek4: return render_deepseek4(messages, add_generation_prompt);
    case ChatFamily::chatml: return render_chatml(messages, add_generation_prompt);
    case ChatFamily::llama3: return render_llama3(messages, add_generation_prompt);
    case ChatFamily::mistral: return render_mistral(messages);
    case ChatFamily::kimi_k2: return render_kimi_k2(messages, add_generation_prompt);
    case ChatFamily::glm4: return render_glm4(messages, add_generation_prompt);
  }
  return {};
}

// ns.system_prompt of DeepSeek-V2.5/V3/R1/V3.1's templates, the roles
// checked: V2.5 keeps the last system message, the others join them all
// with "\n\n" (is_first_sp).
std::string ChatTemplate::deepseek_system_prompt(const std::vector<ChatMessage>& messages) const {
  std::string system;
  bool first_system = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    check_role(messages[i], i, chat_family_name(family_));
    if (messages[i].role != "system") continue;
    if (family_ == ChatFamily::deepseek25 || first_system)
      system = family_ == ChatFamily::deepseek25 ? messages[i].content : system + messages[i].content;
    else
      system += "\n\n" + messages[i].content;
    first_system = false;
  }
  return system;
}

// DeepSeek-V2.5/V3/R1: {{bos_token}}{{ns.system_prompt}} then per message
// '<｜User｜>' + content, or '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'
// (the literal text, not eos_token); generation prompt '<｜Assistant｜>' (R1:
// '<｜Assistant｜><think>\n'). Tool calls are outside what we render.
std::string ChatTemplate::render_deepseek(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out = bos_ + deepseek_system_prompt(messages);
  for (const auto& m : messages) {
    if (m.role == "user") {
      out += "<｜User｜>" + m.content;
    } else if (m.role == "assistant") {
      std::string_view content = m.content;
      if (family_ == ChatFamily::deepseek_r1) {  // content.split('</think>')[-1]
        const size_t p = content.rfind("</think>");
        if (p != std::string_view::npos) content = content.substr(p + 8);
      }
      out += "<｜Assistant｜>";
      out += content;
      out += "<｜end▁of▁sentence｜>";
    }
  }
  if (add_generation_prompt) out += family_ == ChatFamily::deepseek_r1 ? "<｜Assistant｜><think>\n" : "<｜Assistant｜>";
  return out;
}

namespace {
// An earlier answer without its reasoning: the text after the first
// </think> (V3.1's content.split('</think>', 1)[1]), all of it when it has none.
std::string_view answer_without_reasoning(std::string_view content) {
  const size_t p = content.find("</think>");
  return p == std::string_view::npos ? content : content.substr(p + 8);
}
}  // namespace

// DeepSeek-V3.1: {{bos_token}}{{ns.system_prompt}} (system messages joined by
// "\n\n"), '<｜User｜>' + content; an answer right after a user turn opens
// with '<｜Assistant｜></think>', then its text after the first '</think>' +
// '<｜end▁of▁sentence｜>'; generation prompt (after a user turn)
// '<｜Assistant｜>' + ('<think>' if thinking else '</think>').
std::string ChatTemplate::render_deepseek31(const std::vector<ChatMessage>& messages,
                                            bool add_generation_prompt) const {
  std::string out = bos_ + deepseek_system_prompt(messages);
  bool last_user = false;
  for (const auto& m : messages) {
    if (m.role == "user") {
      out += "<｜User｜>" + m.content;
      last_user = true;
    } else if (m.role == "assistant") {
      if (last_user) out += "<｜Assistant｜></think>";
      last_user = false;
      out += answer_without_reasoning(m.content);
      out += "<｜end▁of▁sentence｜>";
    }
  }
  if (add_generation_prompt && last_user) out += thinking_ ? "<｜Assistant｜><think>" : "<｜Assistant｜></think>";
  return out;
}

// DeepSeek-V3.2 (encoding_dsv32.py of its release, chat without tools):
// bos, then each message in order: system as its text; user as
// '<｜User｜>' + content + '<｜Assistant｜>' followed by '<think>' for the
// last user turn in thinking mode and '</think>' otherwise; an answer as its
// text + '<｜end▁of▁sentence｜>', its reasoning kept only for an answer after
// the last user turn in thinking mode (drop_thinking). Every user turn opens
// the answer, so there is no separate generation prompt.
// DeepSeek-V4 (its Jinja with drop_thinking true, no tools): bos, the
// "max" effort preamble when thinking, the system messages joined by
// "\n\n"; each run of user messages "<｜User｜>" + their texts joined by
// "\n\n"; each answer "<｜Assistant｜>" + "</think>" + its text after the
// reasoning + "<｜end▁of▁sentence｜>", except that an answer after the last
// user turn keeps its reasoning when thinking ("<think>" + reasoning +
// "</think>" + text); the generation prompt "<｜Assistant｜>" + "<think>" or
// "</think>".
std::string ChatTemplate::render_deepseek4(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  static constexpr std::string_view kEffortMax =
      "Reasoning Effort: Absolute maximum with no shortcuts permitted.\nYou MUST be very thorough in your thinking and "
      "comprehensively decompose the problem to resolve the root cause, rigorously stress-testing your logic against "
      "all potential paths, edge cases, and adversarial scenarios.\nExplicitly write out your entire deliberation "
      "process, documenting every intermediate step, considered alternative, and rejected hypothesis to ensure "
      "absolutely no assumption is left unchecked.\n\n";
  size_t last_user = messages.size();
  for (size_t i = 0; i < messages.size(); ++i) {
    check_role(messages[i], i, "deepseek4");
    if (messages[i].role == "user") last_user = i;
  }
  std::string out = bos_;
  if (!messages.empty() && thinking_ && reasoning_effort_ == "max") out += kEffortMax;
  out += deepseek_system_prompt(messages);
  bool in_user = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      out += in_user ? "\n\n" : "<｜User｜>";
      in_user = true;
      out += m.content;
    } else if (m.role == "assistant") {
      in_user = false;
      out += "<｜Assistant｜>";
      const bool keep_reasoning = thinking_ && last_user < messages.size() && i > last_user;
      const size_t end = m.content.find("</think>");
      if (keep_reasoning) {
        // The stored answer is what followed "<think>": reasoning "</think>" text.
        out += "<think>";
        out += end == std::string::npos ? "</think>" + m.content : m.content;
      } else {
        out += "</think>";
        out += answer_without_reasoning(m.content);
      }
      out += "<｜end▁of▁sentence｜>";
    }
  }
  if (add_generation_prompt) out += thinking_ ? "<｜Assistant｜><think>" : "<｜Assistant｜></think>";
  return out;
}

std::string ChatTemplate::render_deepseek32(const std::vector<ChatMessage>& messages) const {
  size_t last_user = messages.size();
  for (size_t i = messages.size(); i-- > 0;)
    if (messages[i].role == "user") {
      last_user = i;
      break;
    }
  std::string out = bos_;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    check_role(m, i, "deepseek3.2");
    if (m.role == "system") {
      out += m.content;
    } else if (m.role == "user") {
      out += "<｜User｜>" + m.content + "<｜Assistant｜>";
      out += i == last_user && thinking_ ? "<think>" : "</think>";
    } else {
      const bool keep_reasoning = thinking_ && last_user < messages.size() && i > last_user;
      out += keep_reasoning ? std::string_view(m.content) : answer_without_reasoning(m.content);
      out += "<｜end▁of▁sentence｜>";
    }
  }
  return out;
}

// DeepSeek-V2-Chat: {{ bos_token }} then 'User: ' + content + '\n\n',
// 'Assistant: ' + content + eos_token, system content + '\n\n'; generation
// prompt 'Assistant:' (no space: the model writes it).
std::string ChatTemplate::render_deepseek2(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out = bos_;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    check_role(m, i, "deepseek2");
    if (m.role == "user") out += "User: " + m.content + "\n\n";
    else if (m.role == "assistant") out += "Assistant: " + m.content + eos_;
    else out += m.content + "\n\n";
  }
  if (add_generation_prompt) out += "Assistant:";
  return out;
}

// ChatML (Qwen2): '<|im_start|>' + role + '\n' + content + '<|im_end|>\n'; no
// BOS; generation prompt '<|im_start|>assistant\n'.
std::string ChatTemplate::render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  if (!default_system_.empty() && !messages.empty() && messages[0].role != "system")
    out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
  for (size_t i = 0; i < messages.size(); ++i) {
    check_role(messages[i], i, "chatml");
    out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// Llama 3: bos_token before the first message, then per message
// '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content|trim + '<|eot_id|>'.
std::string ChatTemplate::render_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    check_role(messages[i], i, "llama3");
    if (i == 0) out += bos_;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + trim(messages[i].content) + "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Mistral-7B-Instruct-v0.2: an optional first system message goes into the
// first user turn; then strictly alternating ' [INST] ' + content + ' [/INST]'
// and ' ' + content + eos_token. The template has no generation prompt: the
// model answers after [/INST].
std::string ChatTemplate::render_mistral(const std::vector<ChatMessage>& messages) const {
  size_t first = 0;
  const std::string* system = nullptr;
  if (!messages.empty() && messages[0].role == "system") {
    system = &messages[0].content;
    first = 1;
  }
  std::string out = bos_;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool expect_user = (i - first) % 2 == 0;
    if ((m.role == "user") != expect_user || (m.role != "user" && m.role != "assistant"))
      throw_error("chat message %zu: the mistral template needs an optional system message, then user and assistant "
                  "messages alternating (found role '%s' where '%s' was expected)",
                  i, m.role.c_str(), expect_user ? "user" : "assistant");
    if (m.role == "user")
      out += (i == first && system ? " [INST] " + *system + "\n\n" : std::string(" [INST] ")) + m.content + " [/INST]";
    else
      out += " " + m.content + eos_;
  }
  return out;
}

// Kimi K2 (moonshotai/Kimi-K2-Instruct, as llama.cpp renders it):
// '<|im_' + role + '|>' + role + '<|im_middle|>' + content + '<|im_end|>'
// (the system turn as '<|im_system|>system'); generation prompt
// '<|im_assistant|>assistant<|im_middle|>'. No BOS.
std::string ChatTemplate::render_kimi_k2(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    check_role(messages[i], i, "kimi-k2");
    out += "<|im_" + messages[i].role + "|>" + messages[i].role + "<|im_middle|>" + messages[i].content + "<|im_end|>";
  }
  if (add_generation_prompt) out += "<|im_assistant|>assistant<|im_middle|>";
  return out;
}

// GLM-4 (llama.cpp's CHATGLM_4): '[gMASK]<sop>', then per message
// '<|' + role + '|>\n' + content; generation prompt '<|assistant|>\n'.
std::string ChatTemplate::render_glm4(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out = "[gMASK]<sop>";
  for (size_t i = 0; i < messages.size(); ++i) {
    check_role(messages[i], i, "chatglm4");
    out += "<|" + messages[i].role + "|>\n" + messages[i].content;
  }
  if (add_generation_prompt) out += "<|assistant|>\n";
  return out;
}

}  // namespace moe
