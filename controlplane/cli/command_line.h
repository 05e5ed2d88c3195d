// lbctl's command-line grammar: `lbctl [global flags] <words...> [args] [flags]`.
//
// A command is a fixed sequence of words ("backend add"), positional
// arguments (a count range) and its own flags; global flags are accepted
// anywhere; a leading word `help` means `--help`. Flags are `--name=value`,
// `--name value`, or `--name` for a switch (`--name=false` turns it off);
// `--` ends the flags; `-h`/`--help` asks for help at whatever level the
// words reached. gflags is not used: its flags are process-global, while
// each subcommand here has its own set.
//
// Errors: ParseCommandLine returns InvalidArgument with a one-line message
// (unknown command or flag, missing value, wrong number of arguments); the
// caller prints it and exits with the usage status.
//
// Threads: plain functions over values.
#ifndef LB_CONTROLPLANE_CLI_COMMAND_LINE_H_
#define LB_CONTROLPLANE_CLI_COMMAND_LINE_H_

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace lb::cli {

struct FlagDef {
  std::string name;        // without "--"
  std::string value_name;  // "" = a switch; else the placeholder in help ("N")
  std::string help;
  bool repeated = false;  // may be given several times (values accumulate)
};

struct ParsedArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> flags;  // switches hold "true"/"false"

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  // The last value given, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  bool Switch(const std::string& name) const { return Get(name, "false") == "true"; }
};

struct CommandDef {
  std::vector<std::string> words;  // {"backend", "add"}
  std::string args_usage;          // "ADDRESS:PORT"
  size_t min_args = 0;
  size_t max_args = 0;
  std::string summary;  // one line, for the command list
  std::string details;  // paragraph(s) for `--help`
  std::vector<FlagDef> flags;
  std::function<int(const ParsedArgs&)> run;
};

struct Invocation {
  const CommandDef* command = nullptr;  // null: only a group (or nothing) was named
  std::vector<std::string> words;       // the command words matched so far
  ParsedArgs args;                      // global and command flags together
  bool help = false;
};

// Fills `out` as far as it gets, so that on an error out->command (if set)
// names the command whose help to point at.
absl::Status ParseCommandLine(const std::vector<std::string>& argv,
                              const std::vector<FlagDef>& global_flags,
                              const std::vector<CommandDef>& commands, Invocation* out);

// "backend add ADDRESS:PORT [flags]"
std::string CommandUsage(const CommandDef& command);
// Help for one command; `footer` (exit codes, global flags) is appended.
std::string CommandHelp(const std::string& program, const CommandDef& command,
                        const std::string& footer);
// The commands whose words start with `prefix`, one per line with summaries.
std::string CommandList(const std::string& program, const std::vector<CommandDef>& commands,
                        const std::vector<std::string>& prefix);
std::string FlagsHelp(const std::vector<FlagDef>& flags);

}  // namespace lb::cli

#endif  // LB_CONTROLPLANE_CLI_COMMAND_LINE_H_
