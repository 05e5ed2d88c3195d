#include "controlplane/cli/command_line.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lb::cli {
namespace {

const FlagDef* FindFlag(const std::string& name, const std::vector<FlagDef>& a,
                        const std::vector<FlagDef>* b) {
  for (const FlagDef& f : a) {
    if (f.name == name) return &f;
  }
  if (b != nullptr) {
    for (const FlagDef& f : *b) {
      if (f.name == name) return &f;
    }
  }
  return nullptr;
}

bool StartsWithWords(const std::vector<std::string>& words,
                     const std::vector<std::string>& prefix) {
  if (prefix.size() > words.size()) return false;
  return std::equal(prefix.begin(), prefix.end(), words.begin());
}

// Reads the flag at argv[*i] into `out`; advances *i past a separate value.
absl::Status TakeFlag(const std::vector<std::string>& argv, size_t* i,
                      const std::vector<FlagDef>& global_flags, const CommandDef* command,
                      const std::string& where, ParsedArgs* out) {
  const std::string& token = argv[*i];
  std::string body = token.substr(2);
  std::string value;
  bool has_value = false;
  if (size_t eq = body.find('='); eq != std::string::npos) {
    value = body.substr(eq + 1);
    body.resize(eq);
    has_value = true;
  }
  const FlagDef* def = FindFlag(body, global_flags, command != nullptr ? &command->flags : nullptr);
  if (def == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown flag --", body, " for ", where));
  }
  if (def->value_name.empty()) {
    if (has_value && value != "true" && value != "false") {
      return absl::InvalidArgumentError(
          absl::StrCat("--", body, " is a switch: give it alone, =true or =false"));
    }
    out->flags[body] = {has_value ? value : "true"};
    return absl::OkStatus();
  }
  if (!has_value) {
    if (*i + 1 >= argv.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", body, " needs a value (", def->value_name, ")"));
    }
    value = argv[++*i];
  }
  std::vector<std::string>& slot = out->flags[body];
  if (!def->repeated) slot.clear();
  slot.push_back(value);
  return absl::OkStatus();
}

}  // namespace

std::string ParsedArgs::Get(const std::string& name, const std::string& fallback) const {
  auto it = flags.find(name);
  if (it == flags.end() || it->second.empty()) return fallback;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::GetAll(const std::string& name) const {
  auto it = flags.find(name);
  return it == flags.end() ? std::vector<std::string>{} : it->second;
}

namespace {

// Global flags and command words, until the words name one command; *i ends
// after the last word, *flags_ended says whether "--" came first.
absl::Status TakeCommandWords(const std::vector<std::string>& argv,
                              const std::vector<FlagDef>& global_flags,
                              const std::vector<CommandDef>& commands, size_t* i_out,
                              bool* flags_ended, Invocation* out) {
  Invocation& inv = *out;
  size_t& i = *i_out;
  for (; i < argv.size() && inv.command == nullptr; ++i) {
    const std::string& token = argv[i];
    if (token == "-h" || token == "--help") {
      inv.help = true;
      continue;
    }
    if (token == "--") {
      *flags_ended = true;
      ++i;
      break;
    }
    if (absl::StartsWith(token, "--")) {
      if (absl::Status s = TakeFlag(argv, &i, global_flags, nullptr, "lbctl", &inv.args); !s.ok()) {
        return s;
      }
      continue;
    }
    if (absl::StartsWith(token, "-")) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", token));
    }
    if (inv.words.empty() && token == "help" && !inv.help) {
      inv.help = true;  // "help backend add" = "backend add --help"
      continue;
    }
    std::vector<std::string> words = inv.words;
    words.push_back(token);
    bool prefix_of_some = false;
    for (const CommandDef& c : commands) {
      if (c.words == words) inv.command = &c;
      prefix_of_some = prefix_of_some || StartsWithWords(c.words, words);
    }
    if (!prefix_of_some) {
      return absl::InvalidArgumentError(
          inv.words.empty() ? absl::StrCat("unknown command \"", token, "\"")
                            : absl::StrCat("unknown command \"", absl::StrJoin(words, " "), "\""));
    }
    inv.words = std::move(words);
  }
  return absl::OkStatus();
}

// The command's own flags (and global ones) and its arguments, then the
// argument count.
absl::Status TakeCommandArgs(const std::vector<std::string>& argv,
                             const std::vector<FlagDef>& global_flags, size_t i, bool flags_ended,
                             Invocation* out) {
  Invocation& inv = *out;
  const std::string where = absl::StrCat("\"", absl::StrJoin(inv.command->words, " "), "\"");
  for (; i < argv.size(); ++i) {
    const std::string& token = argv[i];
    if (!flags_ended) {
      if (token == "--") {
        flags_ended = true;
        continue;
      }
      if (token == "-h" || token == "--help") {
        inv.help = true;
        continue;
      }
      if (absl::StartsWith(token, "--")) {
        if (absl::Status s = TakeFlag(argv, &i, global_flags, inv.command, where, &inv.args);
            !s.ok()) {
          return s;
        }
        continue;
      }
      if (absl::StartsWith(token, "-") && token.size() > 1) {
        return absl::InvalidArgumentError(absl::StrCat("unknown flag ", token, " for ", where));
      }
    }
    inv.args.positional.push_back(token);
  }
  if (inv.help) return absl::OkStatus();
  const size_t n = inv.args.positional.size();
  if (n < inv.command->min_args || n > inv.command->max_args) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, " takes ",
        inv.command->args_usage.empty() ? std::string("no arguments") : inv.command->args_usage,
        ", got ", n, " argument(s)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseCommandLine(const std::vector<std::string>& argv,
                              const std::vector<FlagDef>& global_flags,
                              const std::vector<CommandDef>& commands, Invocation* out) {
  Invocation& inv = *out;
  inv = Invocation();
  size_t i = 0;
  bool flags_ended = false;
  if (absl::Status s = TakeCommandWords(argv, global_flags, commands, &i, &flags_ended, out);
      !s.ok()) {
    return s;
  }
  if (inv.command == nullptr)
    return absl::OkStatus();  // a group, or nothing: the caller prints help
  return TakeCommandArgs(argv, global_flags, i, flags_ended, out);
}

std::string CommandUsage(const CommandDef& command) {
  std::string usage = absl::StrJoin(command.words, " ");
  if (!command.args_usage.empty()) absl::StrAppend(&usage, " ", command.args_usage);
  if (!command.flags.empty()) absl::StrAppend(&usage, " [flags]");
  return usage;
}

std::string FlagsHelp(const std::vector<FlagDef>& flags) {
  std::vector<std::string> lefts;
  size_t width = 0;
  for (const FlagDef& f : flags) {
    std::string left = absl::StrCat("  --", f.name);
    if (!f.value_name.empty()) absl::StrAppend(&left, " ", f.value_name);
    width = std::max(width, left.size());
    lefts.push_back(std::move(left));
  }
  std::string out;
  for (size_t i = 0; i < flags.size(); ++i) {
    absl::StrAppend(&out, lefts[i], std::string(width - lefts[i].size() + 2, ' '), flags[i].help,
                    flags[i].repeated ? " (repeatable)" : "", "\n");
  }
  return out;
}

std::string CommandHelp(const std::string& program, const CommandDef& command,
                        const std::string& footer) {
  std::string out =
      absl::StrCat("Usage: ", program, " ", CommandUsage(command), "\n\n", command.summary, ".\n");
  if (!command.details.empty()) absl::StrAppend(&out, "\n", command.details, "\n");
  if (!command.flags.empty()) absl::StrAppend(&out, "\nFlags:\n", FlagsHelp(command.flags));
  absl::StrAppend(&out, footer);
  return out;
}

std::string CommandList(const std::string& program, const std::vector<CommandDef>& commands,
                        const std::vector<std::string>& prefix) {
  std::vector<std::string> usages;
  std::vector<const CommandDef*> shown;
  size_t width = 0;
  for (const CommandDef& c : commands) {
    if (!StartsWithWords(c.words, prefix)) continue;
    usages.push_back(absl::StrCat("  ", program, " ", CommandUsage(c)));
    width = std::max(width, usages.back().size());
    shown.push_back(&c);
  }
  std::string out;
  for (size_t i = 0; i < shown.size(); ++i) {
    absl::StrAppend(&out, usages[i], std::string(width - usages[i].size() + 2, ' '),
                    shown[i]->summary, "\n");
  }
  return out;
}

}  // namespace lb::cli
