// Flags and logging set-up shared by the two daemons (lb-controlplane,
// lb-dataplane): glog to stderr by default (systemd/journald keep it; give
// --logtostderr=false --log_dir=DIR for glog's own files), and a flag parse
// that reports a flag gflags would refuse as one glog error line naming it
// instead of gflags' own message.
//
// Header-only so both binaries use it without a new library; main() only, on
// the main thread, before any other thread starts.
#ifndef LB_LIB_PROCESS_FLAGS_H_
#define LB_LIB_PROCESS_FLAGS_H_

#include <cstdio>
#include <string>
#include <string_view>

#include "gflags/gflags.h"
#include "glog/logging.h"

namespace lb {

// Call first in main(). Flags parsed later may still change any glog flag
// (glog reads them per message).
inline void StartLogging(const char* argv0) {
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv0);
}

// "" when gflags accepts every flag in argv[1..argc) (up to "--"); else what
// is wrong with the first one it would refuse. Values of non-string flags are
// checked by setting them: ParseFlags sets them to the same values again.
inline std::string FirstBadFlag(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;  // positional: the caller refuses it
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    const std::string name(arg.substr(0, eq));
    gflags::CommandLineFlagInfo info;
    if (!gflags::GetCommandLineFlagInfo(name.c_str(), &info)) {
      // --noNAME clears the bool flag NAME.
      if (eq == std::string_view::npos && name.rfind("no", 0) == 0 &&
          gflags::GetCommandLineFlagInfo(name.c_str() + 2, &info) && info.type == "bool") {
        continue;
      }
      return "unknown flag --" + name + " (see --help)";
    }
    if (info.type == "string") {
      if (eq == std::string_view::npos) ++i;  // --name value
      continue;
    }
    std::string value;
    if (eq != std::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (info.type == "bool") {
      continue;  // --name alone sets it
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return "--" + name + " needs a value";
    }
    if (gflags::SetCommandLineOption(name.c_str(), value.c_str()).empty()) {
      return "--" + name + ": \"" + value + "\" is not a valid " + info.type;
    }
  }
  return "";
}

// gflags::ParseCommandLineFlags (flags removed from argv), except that a
// refused flag is logged as an error naming it and false is returned.
inline bool ParseFlags(int* argc, char*** argv) {
  if (const std::string bad = FirstBadFlag(*argc, *argv); !bad.empty()) {
    LOG(ERROR) << bad;
    return false;
  }
  gflags::ParseCommandLineFlags(argc, argv, true);
  return true;
}

// The glog flags worth knowing, for a --help that lists only the binary's
// own flags.
inline void PrintLoggingFlagsHelp() {
  std::fputs("\n  Logging (glog; to stderr unless --logtostderr=false):\n", stdout);
  for (const char* name :
       {"v", "vmodule", "minloglevel", "logtostderr", "stderrthreshold", "log_dir"}) {
    gflags::CommandLineFlagInfo info;
    if (gflags::GetCommandLineFlagInfo(name, &info)) {
      std::fputs(gflags::DescribeOneFlag(info).c_str(), stdout);
    }
  }
}

}  // namespace lb

#endif  // LB_LIB_PROCESS_FLAGS_H_
