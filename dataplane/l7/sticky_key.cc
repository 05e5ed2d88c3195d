#include "dataplane/l7/sticky_key.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "lib/l7/sticky_cookie.h"

namespace lb::l7 {

absl::Status LoadStickyKey(RuntimeConfig* config) {
  bool wanted = false;
  for (const PoolConfig& p : config->pools) wanted |= p.sticky == StickyMode::kCookie;
  if (!wanted) return absl::OkStatus();
  const std::string& path = config->sticky_secret_file;
  if (path.empty()) {
    std::string key(kMinStickyKeyBytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), key.size()) != 1) {
      return absl::InternalError("sticky_secret_file: no random bytes for a key");
    }
    config->sticky_key = std::move(key);
    LOG(WARNING) << "sticky_secret_file is not set: sticky cookies are signed with a key of "
                    "this process only; another lb-l7 node (or this one restarted) will not "
                    "honour them and re-pins those clients";
    return absl::OkStatus();
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("sticky_secret_file: cannot read \"", path, "\""));
  }
  if ((st.st_mode & 0077) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sticky_secret_file: \"", path,
                     "\" is readable or writable by group or others; chmod 0600"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string key = ss.str();
  if (!in || key.size() < kMinStickyKeyBytes || key.size() > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("sticky_secret_file: \"", path, "\" must hold ",
                                                   kMinStickyKeyBytes, "..4096 bytes"));
  }
  config->sticky_key = std::move(key);
  return absl::OkStatus();
}

}  // namespace lb::l7
