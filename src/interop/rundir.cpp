// rundir: atomic files, run directories, history files.
#include "interop/rundir.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "config/errors.h"
#include "config/user_input.h"

namespace mnist {
namespace {

// The temporary being written (write_atomically), for end_on_signal; g_temporary_set: it is whole.
char g_temporary[4096];
volatile std::sig_atomic_t g_temporary_set = 0;

extern "C" void end_on_signal(int sig) {
  if (g_temporary_set) ::unlink(g_temporary);
  std::signal(sig, SIG_DFL);
  ::raise(sig);
}

// Marks `tmp` as the temporary in flight while it lives.
class InFlight {
 public:
  explicit InFlight(const fs::path& tmp) {
    const std::string text = tmp.string();
    if (text.size() >= sizeof g_temporary) return;
    std::memcpy(g_temporary, text.c_str(), text.size() + 1);
    g_temporary_set = 1;
  }
  ~InFlight() { g_temporary_set = 0; }
};

// What a path that is not a regular file is, for messages ("" for a regular file or nothing).
std::string non_file_kind(const fs::path& path) {
  std::error_code ec;
  const fs::file_status s = fs::symlink_status(path, ec);
  if (ec || !fs::exists(s) || fs::is_regular_file(s)) return "";
  if (fs::is_symlink(s)) return "a symbolic link";
  if (fs::is_directory(s)) return "a folder";
  if (fs::is_block_file(s) || fs::is_character_file(s)) return "a device";
  if (fs::is_fifo(s)) return "a FIFO";
  return fs::is_socket(s) ? "a socket" : "not a regular file";
}

fs::path temp_name(const fs::path& path) {
  return path.parent_path() / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()));
}

// Calls `write(tmp)` with a temporary name beside `path`, then renames it onto `path`; on any
// failure the temporary is removed and the error propagates.
// A missing parent folder is created first, as `train --out` creates its run directory. Only a
// regular file is ever replaced (a rename would put the file in place of a link or a device node).
void write_atomically(const fs::path& path, const std::function<void(const fs::path& tmp)>& write) {
  if (const std::string kind = non_file_kind(path); !kind.empty())
    throw std::runtime_error("cannot write " + path.string() + ": it is " + kind + ", and outputs replace only regular files");
  std::error_code ec;
  if (path.has_parent_path() && !fs::exists(path.parent_path(), ec)) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) throw std::runtime_error("cannot create the folder " + path.parent_path().string() + " for " + path.filename().string() + ": " + ec.message());
  }
  const fs::path tmp = temp_name(path);
  const InFlight in_flight(tmp);
  try {
    write(tmp);
    fs::rename(tmp, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

std::string timestamp() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

}  // namespace

void write_file_atomic(const fs::path& path, const std::string& content) {
  write_atomically(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + path.string() + ": disk full or not writable");
  });
}

void check_output_file(const fs::path& out, const std::string& flag, const std::vector<fs::path>& inputs) {
  if (const std::string kind = non_file_kind(out); !kind.empty())
    throw UsageError(flag + " " + out.string() + ": it is " + kind + ", and outputs replace only regular files; remove it or choose another path");
  std::error_code ec;
  const auto same = [&](const fs::path& in) { return fs::equivalent(out, in, ec) || fs::weakly_canonical(out, ec) == fs::weakly_canonical(in, ec); };
  for (const fs::path& in : inputs)
    if (same(in))
      throw UsageError(flag + " " + out.string() + ": that is this command's input " + in.string() + ", which it would overwrite; choose another path");
}

void check_model_outputs(const fs::path& out, const fs::path& weights, const std::string& flag, const std::vector<fs::path>& inputs) {
  check_output_file(out, flag, inputs);
  check_output_file(weights, flag + " " + out.string() + " also writes", inputs);
  std::error_code ec;
  if (fs::exists(weights, ec) && !fs::exists(out, ec))
    throw UsageError(flag + " " + out.string() + ": its state_dict goes to " + weights.string() +
                     ", which exists without " + out.filename().string() + " beside it; move it or choose another path");
}

void end_cleanly_on_signals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, end_on_signal);
  std::signal(SIGXFSZ, SIG_IGN);  // past a file-size limit a write fails (EFBIG) and is reported, as on a full disk
}

void remove_temporaries(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos && e.is_regular_file(ec)) fs::remove(e.path(), ec);
  }
}

void check_out_dir(const std::string& out) {
  const fs::path dir(out);
  if (!out.empty() && fs::exists(dir) && !(fs::is_directory(dir) && fs::is_empty(dir)))
    throw UsageError("--out " + out + ": already exists and is not an empty directory; choose a new path (runs are never overwritten)");
}

std::string point_latest_at(const fs::path& run_dir) {
  const fs::path runs_root = run_dir.parent_path(), link = runs_root / "latest";
  const fs::path temporary = runs_root / (".latest.tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  const auto status = fs::symlink_status(link, ec);
  if (fs::exists(status) && !fs::is_symlink(status))
    return link.string() + " is a " + (fs::is_directory(status) ? "directory" : "file") + " of your own, left as it is";
  fs::remove(temporary, ec);
  fs::create_directory_symlink(run_dir.filename(), temporary, ec);
  if (!ec) fs::rename(temporary, link, ec);
  if (!ec) return "";
  const std::string why = ec.message();
  fs::remove(temporary, ec);
  return "cannot link " + link.string() + " here (" + why + ")";
}

fs::path create_run_dir(const std::string& out, const std::string& name, const fs::path& runs_root) {
  std::error_code ec;
  check_out_dir(out);
  if (!out.empty()) {
    const fs::path dir(out);
    fs::create_directories(dir, ec);
    if (ec) throw std::runtime_error("cannot create run directory " + out + ": " + ec.message());
    return dir;
  }
  fs::create_directories(runs_root, ec);
  if (ec) throw std::runtime_error("cannot create " + runs_root.string() + ": " + ec.message());
  const std::string base = name + "-" + timestamp();
  for (int i = 1; i < 1000; ++i) {
    const fs::path dir = runs_root / (i == 1 ? base : base + "-" + std::to_string(i));
    if (fs::create_directory(dir, ec)) return dir;  // atomic: fails if another run took the name
    if (ec) throw std::runtime_error("cannot create run directory " + dir.string() + ": " + ec.message());
  }
  throw std::runtime_error("cannot find a free run directory name under " + runs_root.string());
}

void save_history(const fs::path& dir, const History& history) {
  write_file_atomic(dir / "history.json", history.to_json().dump(2) + "\n");
  write_file_atomic(dir / "history.csv", history.to_csv());
}

}  // namespace mnist
