// Interactive chat: `moe -m FILE` (no prompt) or `moe -i`.
//
// Each turn renders the whole conversation through the model's chat template
// and evaluates only what the session does not hold yet (runtime/prefix_reuse.h).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <memory>
#include <string>
#include <vector>

#include "cli/line_input.h"
#include "cli/prompt_cache.h"
#include "cli/options.h"
#include "core/error.h"
#include "runtime/generate.h"
#include "runtime/prefix_reuse.h"
#include "runtime/reasoning_filter.h"

namespace moe {

namespace {

constexpr const char* kHelp =
    "Commands:\n"
    "  /help    this text (also /?)\n"
    "  /reset   forget the conversation (keeps --system; also /clear)\n"
    "  /set think, /set nothink  thinking on or off (templates with a switch: DeepSeek-V3.1, V3.2, V4)\n"
    "  /save FILE  write the conversation and its cache to FILE\n"
    "  /load FILE  continue a conversation saved with /save (same model and -ctk)\n"
    "  /exit    leave (also /quit, /bye, Ctrl-D, or Ctrl-C at the prompt)\n"
    "Ctrl-C during an answer stops it and returns to the prompt.\n"
    "Multi-line input: end a line with \\ to continue it on the next line, put the\n"
    "text between two lines that contain only \"\"\", or paste it.\n";

// Dim reasoning text only on a terminal that can show it: not when TERM is
// "dumb" or NO_COLOR is set (no-color.org).
bool terminal_styles() {
  const char* term = std::getenv("TERM");
  const char* no_color = std::getenv("NO_COLOR");
  return isatty(STDOUT_FILENO) && !(term && std::string(term) == "dumb") && !(no_color && *no_color);
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// What one turn evaluates: the session keeps its first `keep` tokens and
// `tokens[keep..]` is new.
struct TurnPlan {
  std::string rendered;
  std::vector<int32_t> tokens;
  size_t keep = 0;
};

// What /save keeps besides the cache: the messages, and the text of the
// cached tokens (the next turn's rendering is compared with it, so the
// answers keep the tokens they were generated as, which tokenizing their
// text again need not give).
struct SavedConversation {
  std::vector<ChatMessage> messages;
  std::string cached_text;
};
std::string encode_conversation(const SavedConversation& c);
SavedConversation parse_conversation(const std::string& text, const std::string& path);

class Chat {
 public:
  Chat(const CliOptions& o, LoadedModel& m, ChatTemplate tmpl)
      : o_(o), m_(m), tmpl_(std::move(tmpl)), session_(make_session(o, m)),
        sampler_(o.sampling, static_cast<int32_t>(m.n_vocab())) {
    reset();
  }

  void write_stats() const {
    write_expert_stats(o_.run, *session_, "moe");
  }

  void reset() {
    messages_.clear();
    if (!o_.system.empty()) messages_.push_back({"system", o_.system});
    // The cache is not cleared here: the next turn reuses whatever prefix
    // (BOS, the system prompt) still matches.
  }

  // Thinking on or off from the next turn on. The turns before keep their
  // rendering (only the last user turn carries the switch), so the cache
  // still serves them.
  void set_thinking(bool on) {
    if (!tmpl_.can_toggle_thinking()) {
      std::printf("[the %s template has no thinking switch]\n", chat_family_name(tmpl_.family()));
      return;
    }
    tmpl_.set_thinking(on);
    std::printf("[thinking %s]\n", on ? "on" : "off");
  }

  void turn(const std::string& text) {
    messages_.push_back({"user", text});
    TurnPlan plan;
    try {
      plan = plan_turn();
      while (static_cast<int64_t>(plan.tokens.size()) >= session_->n_ctx()) {
        if (!o_.context_shift) {
          std::fprintf(stderr,
                       "\n[context full: the conversation needs %zu tokens, the context holds %lld; /reset to start "
                       "over (or run with --context-shift)]\n",
                       plan.tokens.size(), static_cast<long long>(session_->n_ctx()));
          messages_.pop_back();
          return;
        }
        if (!drop_oldest_turn()) {
          std::fprintf(stderr, "\n[the message is too long for the context of %lld tokens]\n",
                       static_cast<long long>(session_->n_ctx()));
          messages_.pop_back();
          return;
        }
        std::fprintf(stderr, "[context full: dropped the oldest turn]\n");
        plan = plan_turn();
        shift_out_dropped(plan);
      }
    } catch (const Error& e) {  // a conversation the template cannot express
      std::fprintf(stderr, "\n[%s]\n", e.what());
      messages_.pop_back();
      return;
    }

    session_->truncate(static_cast<int64_t>(plan.keep));
    cached_.resize(plan.keep);
    const std::vector<int32_t> fresh(plan.tokens.begin() + static_cast<std::ptrdiff_t>(plan.keep), plan.tokens.end());

    GenerateOptions g;
    g.n_predict = o_.n_predict;
    g.stop = o_.stop;
    g.prompt_chunk = o_.n_batch;
    g.ignore_eos = o_.ignore_eos;
    g.spec_draft_n = spec_draft_n(o_);
    const bool dim = terminal_styles();
    ReasoningFilter show(tmpl_.opens_reasoning(), o_.hide_reasoning, dim);
    auto print = [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    };
    sigint_clear();
    const GenerateResult r = generate(
        *session_, m_.tok, sampler_, fresh, g, [&](std::string_view t) { print(show.push(t)); },
        [] { return sigint_pending(); });
    print(show.flush());
    std::fputc('\n', stdout);
    std::fflush(stdout);

    cached_.insert(cached_.end(), fresh.begin(), fresh.begin() + r.n_prompt);
    cached_.insert(cached_.end(), r.generated.begin(), r.generated.end());
    if (!r.prompt_complete) {
      cached_text_.clear();  // the cache ends inside the prompt: compare tokens next time
      messages_.pop_back();
    } else {
      cached_text_ = plan.rendered;
      for (int32_t t : r.generated) cached_text_ += m_.tok.token_to_piece(t, /*special=*/true);
      // The answer as the model wrote it: the bytes of its tokens. This is
      // r.text except where the tokens end inside a UTF-8 character (shown
      // as U+FFFD) or in a stop string; kept raw, the next rendering starts
      // with exactly the text the cache holds and only the new turn is evaluated.
      std::string raw;
      for (int32_t t : r.generated) raw += m_.tok.token_to_piece(t, /*special=*/false);
      messages_.push_back({"assistant", r.finish == FinishReason::stop ? r.text : raw});
    }
    if (r.finish == FinishReason::context_full)
      std::fprintf(stderr, "[context full (%lld tokens): /reset to start over%s]\n",
                   static_cast<long long>(session_->n_ctx()),
                   o_.context_shift ? ", or keep going: the oldest turns will be dropped" : "");
    if (!o_.quiet)
      std::fprintf(stderr, "[prompt %lld tokens (new), %zu cached | generated %lld tokens, %.1f tok/s%s | %s]\n",
                   static_cast<long long>(r.n_prompt), plan.keep, static_cast<long long>(r.n_generated),
                   static_cast<double>(r.n_generated) / std::max(r.gen_s, 1e-9),
                   spec_stats_text(r.n_drafted, r.n_accepted).c_str(), finish_reason_text(r.finish));
  }

  // The conversation with the cache rows of its tokens: loading it again
  // evaluates nothing the session held.
  void save(const std::string& path) const {
    prompt_cache_save(path, o_.model, *session_, cached_, encode_conversation({messages_, cached_text_}));
    std::printf("[saved %zu messages, %zu tokens of cache, to %s]\n", messages_.size(), cached_.size(), path.c_str());
  }

  // Replaces the conversation and the cache with FILE's; a file that is
  // not a conversation of this model and -ctk changes nothing.
  void load(const std::string& path) {
    PromptCacheData d = prompt_cache_read(path, *session_);
    SavedConversation c = parse_conversation(d.conversation, path);
    session_->saved_cache_import(d, static_cast<int64_t>(d.tokens.size()));
    messages_ = std::move(c.messages);
    cached_ = std::move(d.tokens);
    cached_text_ = std::move(c.cached_text);  // as the saving run had it: its answers' own tokens are kept
    for (int32_t t : cached_) sampler_.accept(t);
    std::printf("[loaded %zu messages, %zu tokens of cache, from %s]\n", messages_.size(), cached_.size(), path.c_str());
  }

 private:
  static std::unique_ptr<InferenceSession> make_session(const CliOptions& o, const LoadedModel& m) {
    // The session's worker threads inherit this mask: Ctrl-C is then always
    // delivered to the main thread, which is what a blocked read needs.
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    auto s = moe::make_session(o, m);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return s;
  }

  TurnPlan plan_turn() const {
    TurnPlan p;
    p.rendered = tmpl_.render(messages_, /*add_generation_prompt=*/true);
    PrefixReuse r = plan_prefix_reuse(m_.tok, p.rendered, cached_, cached_text_);
    p.tokens = std::move(r.tokens);
    p.keep = r.keep;
    return p;
  }

  // After a turn was dropped from the conversation: the cache loses that
  // turn's tokens and the turns after it move down, their RoPE turned to
  // their new positions (K-shift), so they are not evaluated again. The
  // dropped range is where the cached tokens and the new rendering part:
  // cached = A D C and tokens = A C ..., with D the shortest that fits.
  void shift_out_dropped(TurnPlan& plan) {
    const std::vector<int32_t>& t = plan.tokens;
    const size_t k = cached_.size();
    size_t a = 0;
    while (a < k && a < t.size() && cached_[a] == t[a]) ++a;
    for (size_t b = a + 1; b < k; ++b) {
      if (a + (k - b) > t.size() || !std::equal(cached_.begin() + static_cast<std::ptrdiff_t>(b), cached_.end(),
                                                 t.begin() + static_cast<std::ptrdiff_t>(a)))
        continue;
      session_->seq_drop(0, static_cast<int64_t>(a), static_cast<int64_t>(b));
      cached_.erase(cached_.begin() + static_cast<std::ptrdiff_t>(a), cached_.begin() + static_cast<std::ptrdiff_t>(b));
      cached_text_.clear();  // compare tokens: the cache now holds A C
      plan = plan_turn();
      return;
    }
  }

  // Drops the oldest user turn after the system messages, with its answer;
  // never the turn being asked now (the last message).
  bool drop_oldest_turn() {
    size_t i = 0;
    while (i < messages_.size() && messages_[i].role == "system") ++i;
    if (i + 1 >= messages_.size()) return false;
    size_t n = 1;
    if (i + 2 < messages_.size() && messages_[i + 1].role == "assistant") n = 2;
    messages_.erase(messages_.begin() + static_cast<std::ptrdiff_t>(i),
                    messages_.begin() + static_cast<std::ptrdiff_t>(i + n));
    return true;
  }

  const CliOptions& o_;
  LoadedModel& m_;
  ChatTemplate tmpl_;
  std::unique_ptr<InferenceSession> session_;
  Sampler sampler_;
  std::vector<ChatMessage> messages_;
  std::vector<int32_t> cached_;  // the tokens in the session, in order
  std::string cached_text_;      // their text ("" when unknown)
};

// The conversation /save writes, byte for byte (an answer cut by -n may end
// inside a UTF-8 character, which JSON cannot hold): "moe conversation 1\n",
// then per message "ROLE BYTES\n" CONTENT "\n", then "cached-text BYTES\n"
// TEXT "\n".
constexpr const char* kConversationMagic = "moe conversation 1\n";
constexpr const char* kCachedTextRecord = "cached-text";

std::string encode_conversation(const SavedConversation& c) {
  std::string out = kConversationMagic;
  const auto record = [&](const std::string& name, const std::string& bytes) {
    out += name + " " + std::to_string(bytes.size()) + "\n" + bytes + "\n";
  };
  for (const ChatMessage& m : c.messages) record(m.role, m.content);
  record(kCachedTextRecord, c.cached_text);
  return out;
}

SavedConversation parse_conversation(const std::string& text, const std::string& path) {
  if (text.empty()) throw_error("'%s' holds a prompt (--prompt-cache), not a conversation saved with /save", path.c_str());
  const std::string magic = kConversationMagic;
  if (text.compare(0, magic.size(), magic) != 0)
    throw_error("'%s' is not a conversation saved with /save (it does not start with 'moe conversation 1')",
                path.c_str());
  SavedConversation c;
  bool have_text = false;
  size_t i = magic.size(), n = 0;
  while (i < text.size()) {
    ++n;
    const size_t space = text.find(' ', i), eol = text.find('\n', i);
    if (space == std::string::npos || eol == std::string::npos || space > eol)
      throw_error("'%s': record %zu has no 'NAME BYTES' line", path.c_str(), n);
    const std::string name = text.substr(i, space - i), digits = text.substr(space + 1, eol - space - 1);
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
      throw_error("'%s': record %zu has length '%s'", path.c_str(), n, digits.c_str());
    const size_t bytes = std::stoul(digits);
    if (bytes + 1 > text.size() - (eol + 1) || text[eol + 1 + bytes] != '\n')
      throw_error("'%s': record %zu is cut short (%zu bytes announced)", path.c_str(), n, bytes);
    std::string content = text.substr(eol + 1, bytes);
    i = eol + 2 + bytes;
    if (have_text) throw_error("'%s': record %zu comes after the cached text, which ends the file", path.c_str(), n);
    if (name == kCachedTextRecord) {
      c.cached_text = std::move(content);
      have_text = true;
    } else if (name == "system" || name == "user" || name == "assistant") {
      c.messages.push_back({name, std::move(content)});
    } else {
      throw_error("'%s': record %zu is a message of role '%s' (system, user or assistant)", path.c_str(), n,
                  name.c_str());
    }
  }
  if (!have_text) throw_error("'%s': the conversation has no cached-text record", path.c_str());
  return c;
}

// "FILE" of "/save FILE" (name "/save"); "" for any other line.
std::string command_argument(const std::string& cmd, const std::string& name) {
  if (cmd.size() <= name.size() + 1 || cmd.compare(0, name.size(), name) != 0 || cmd[name.size()] != ' ') return {};
  if (cmd.find('\n') != std::string::npos) return {};
  return trim(cmd.substr(name.size() + 1));
}

// A command's failure is a line in the chat, not the end of it.
template <typename F>
void try_command(F f) {
  try {
    f();
  } catch (const std::exception& e) {  // Error, or a file the system refuses
    std::printf("[%s]\n", e.what());
  }
}

// Reads one message: several lines when a line ends in '\' or within """ fences.
LineInput::Status read_message(LineInput& in, std::string& msg) {
  std::string line;
  LineInput::Status st = in.read("> ", line);
  if (st != LineInput::Status::line) return st;
  msg.clear();
  if (trim(line) == "\"\"\"") {
    for (;;) {
      st = in.read(". ", line);
      if (st != LineInput::Status::line) return st;
      if (trim(line) == "\"\"\"") break;
      msg += (msg.empty() ? "" : "\n") + line;
    }
    return LineInput::Status::line;
  }
  for (;;) {
    const bool continued = !line.empty() && line.back() == '\\';
    if (continued) line.pop_back();
    // A pasted block arrives faster than anyone types: its lines are one message.
    const bool pasted = !continued && in.more_pending(30);
    if (!continued && !pasted) break;
    msg += line + "\n";
    st = in.read(pasted ? "" : ". ", line);
    if (st != LineInput::Status::line) return st;
  }
  msg += line;
  return LineInput::Status::line;
}

}  // namespace

int run_chat(const CliOptions& o) {
  LoadedModel m = load_model(o);
  ChatTemplate tmpl = chat_template_for(o, m);
  const char* family = chat_family_name(tmpl.family());
  const char* thinking = !tmpl.can_toggle_thinking() ? "" : tmpl.thinking() ? " (thinking on)" : " (thinking off)";
  sigint_install();
  Chat chat(o, m, std::move(tmpl));
  LineInput in;
  if (!o.quiet)
    std::fprintf(stderr, "moe chat: template %s%s, context %lld tokens. /help for commands, Ctrl-D to leave.\n",
                 family, thinking, static_cast<long long>(m.n_ctx));
  // -p / -f: the first user message; -st: one turn, then leave.
  std::string first = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream f(o.prompt_file, std::ios::binary);
    if (!f) throw_error("cannot read prompt file '%s'", o.prompt_file.c_str());
    std::stringstream ss;
    ss << f.rdbuf();
    first = ss.str();
  }
  if (!first.empty()) {
    sigint_clear();
    chat.turn(first);
    if (o.single_turn) {
      chat.write_stats();
      return 0;
    }
  }
  for (;;) {
    sigint_clear();
    std::string msg;
    const LineInput::Status st = read_message(in, msg);
    if (st != LineInput::Status::line) {
      std::fputc('\n', stdout);
      break;
    }
    const std::string cmd = trim(msg);
    if (cmd.empty()) continue;
    in.add_history(msg);
    if (cmd == "/exit" || cmd == "/quit" || cmd == "/bye") break;
    if (cmd == "/help" || cmd == "/?") {
      std::fputs(kHelp, stdout);
      continue;
    }
    if (cmd == "/set think" || cmd == "/set nothink") {  // Ollama's spelling
      chat.set_thinking(cmd == "/set think");
      continue;
    }
    if (cmd == "/reset" || cmd == "/clear") {
      chat.reset();
      std::fputs("[conversation cleared]\n", stdout);
      continue;
    }
    if (const std::string path = command_argument(cmd, "/save"); !path.empty()) {
      try_command([&] { chat.save(path); });
      continue;
    }
    if (const std::string path = command_argument(cmd, "/load"); !path.empty()) {
      try_command([&] { chat.load(path); });
      continue;
    }
    if (cmd == "/save" || cmd == "/load") {
      std::printf("[%s FILE: name the file]\n", cmd.c_str());
      continue;
    }
    if (cmd[0] == '/' && cmd.find(' ') == std::string::npos && cmd.find('\n') == std::string::npos) {
      std::printf("[unknown command %s; /help lists them]\n", cmd.c_str());
      continue;
    }
    chat.turn(msg);
    if (o.single_turn) break;
  }
  std::fflush(stdout);
  chat.write_stats();
  return 0;
}

}  // namespace moe
