// Chat templates: turning a conversation into the prompt text a chat model
// was trained on.
//
// Models ship their template as Jinja source (tokenizer.chat_template). We do
// not interpret Jinja: like llama.cpp (llm_chat_detect_template), we recognise
// the family from marker strings in the source and render it with C++ that
// reproduces, character for character, what the official template produces
// for plain system/user/assistant conversations. Supported families:
//
//   deepseek2    DeepSeek-V2-Chat        "User: ...\n\nAssistant: ...<eos>"
//   deepseek2.5  DeepSeek-V2.5           <｜User｜>/<｜Assistant｜>, last system message wins
//   deepseek3    DeepSeek-V3             as V2.5, system messages joined by "\n\n"
//   deepseek-r1  DeepSeek-R1             as V3; earlier answers lose their reasoning
//                                        (text up to the last </think>); the generation
//                                        prompt opens "<think>\n"
//   deepseek3.1  DeepSeek-V3.1           as V3; thinking on: the generation prompt opens
//                                        "<think>", off: it closes one ("</think>"); earlier
//                                        answers as "<｜Assistant｜></think>" + the text after
//                                        their first </think>
//   deepseek3.2  DeepSeek-V3.2           its release's encoding script (the files carry no
//                                        Jinja): system text in place, every user turn ends
//                                        "<｜Assistant｜>" + "</think>", the last one "<think>"
//                                        when thinking is on; earlier reasoning dropped
//   deepseek4    DeepSeek-V4             its Jinja for plain conversations: system text first
//                                        (after "max" effort's preamble when thinking), user
//                                        turns "<｜User｜>" (consecutive ones joined by "\n\n"),
//                                        every answer "<｜Assistant｜></think>" + its text after
//                                        the reasoning (kept, as "<think>..</think>", only after
//                                        the last user turn); the generation prompt
//                                        "<｜Assistant｜>" + "<think>" or "</think>"
//   chatml       Qwen2 / ChatML          <|im_start|>role\n...<|im_end|>\n (Qwen2's default
//                                        system prompt when the template has one)
//   llama3       Llama-3-Instruct        <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
//   mistral      Mistral-7B-Instruct-v0.2 " [INST] ... [/INST]" turns, system folded into the
//                                        first user turn
//
//   ChatTemplate t = ChatTemplate::for_source(jinja_text, bos_text, eos_text);
//   std::string prompt = t.render({{"system", "Be brief."}, {"user", "Hi"}}, true);
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFamily {
  deepseek2,
  deepseek25,
  deepseek3,
  deepseek_r1,
  deepseek31,
  deepseek32,
  deepseek4,
  chatml,
  llama3,
  mistral,
  kimi_k2,
  glm4
};

// The family a template's Jinja source belongs to, or nullopt when none of
// ours matches.
std::optional<ChatFamily> chat_family_detect(std::string_view jinja);
// By name as listed above (as given to --chat-template); nullopt if unknown.
std::optional<ChatFamily> chat_family_from_name(std::string_view name);
const char* chat_family_name(ChatFamily f);
// "deepseek2, deepseek2.5, ..." for help and error messages.
std::string chat_family_names();

class ChatTemplate {
 public:
  // bos/eos: the text of the model's BOS and EOS tokens (bos_token and
  // eos_token in the Jinja source); "" when the model has none.
  ChatTemplate(ChatFamily family, std::string bos, std::string eos, std::string default_system = "");

  // Detects the family from `jinja`; throws moe::Error when it is unknown.
  // Picks up Qwen2's default system prompt from the source.
  static ChatTemplate for_source(std::string_view jinja, std::string bos, std::string eos);

  // The prompt for `messages`; add_generation_prompt appends the text that
  // opens the assistant's turn. Throws moe::Error naming the message when the
  // template cannot express the conversation (an unknown role; Mistral's
  // required user/assistant alternation).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  // Thinking mode for the templates that have one (V3.1, V3.2, V4): on (the
  // default, as llama.cpp's --reasoning-budget -1) the model reasons in a
  // <think> block before it answers; off, the block is closed for it.
  bool can_toggle_thinking() const {
    return family_ == ChatFamily::deepseek31 || family_ == ChatFamily::deepseek32 || family_ == ChatFamily::deepseek4;
  }
  void set_thinking(bool on) { thinking_ = on; }
  bool thinking() const { return thinking_; }
  // DeepSeek-V4's reasoning effort (its Jinja's reasoning_effort): "max"
  // puts the release's maximum-effort instruction before the system text
  // when thinking; "high" (the default) and anything else add nothing.
  void set_reasoning_effort(std::string effort) { reasoning_effort_ = std::move(effort); }
  const std::string& reasoning_effort() const { return reasoning_effort_; }

  // Whether the generation prompt leaves the model inside a <think> block.
  bool opens_reasoning() const {
    return family_ == ChatFamily::deepseek_r1 || (can_toggle_thinking() && thinking_);
  }
  ChatFamily family() const { return family_; }

 private:
  std::string deepseek_system_prompt(const std::vector<ChatMessage>& messages) const;
  std::string render_deepseek(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_deepseek2(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_deepseek31(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_deepseek32(const std::vector<ChatMessage>& messages) const;
  std::string render_deepseek4(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_mistral(const std::vector<ChatMessage>& messages) const;
  std::string render_kimi_k2(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string render_glm4(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  ChatFamily family_;
  std::string bos_, eos_;
  std::string default_system_;  // chatml: used when the conversation has no system message
  bool thinking_ = true;
  std::string reasoning_effort_ = "high";
};

}  // namespace moe
