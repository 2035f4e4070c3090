// rundir: atomic files, run directories, checkpoints.
#include "interop/rundir.h"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>

#include "config/errors.h"
#include "config/user_input.h"

namespace mnist {
namespace {

constexpr const char* kCheckpointFormat = "mnist-libtorch-checkpoint/1";

fs::path temp_name(const fs::path& path) {
  return path.parent_path() / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()));
}

// Calls `write(tmp)` with a temporary name beside `path`, then renames it onto `path`; on any
// failure the temporary is removed and the error propagates.
// A missing parent folder is created first, as `train --out` creates its run directory.
void write_atomically(const fs::path& path, const std::function<void(const fs::path& tmp)>& write) {
  std::error_code ec;
  if (path.has_parent_path() && !fs::exists(path.parent_path(), ec)) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) throw std::runtime_error("cannot create the folder " + path.parent_path().string() + " for " + path.filename().string() + ": " + ec.message());
  }
  const fs::path tmp = temp_name(path);
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

std::string read_string(torch::serialize::InputArchive& archive, const std::string& key) {
  c10::IValue v;
  archive.read(key, v);
  return v.toStringRef();
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

namespace {
// runs/latest: a relative symbolic link to the newest run directory under `runs_root`, replaced
// atomically (made under a temporary name, renamed over the old link). Where links cannot be made,
// or a user's own file or directory is called "latest", it is left alone: the run itself goes on.
void point_latest_at(const fs::path& runs_root, const fs::path& run_name) {
  const fs::path link = runs_root / "latest", temporary = runs_root / (".latest.tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  if (fs::exists(fs::symlink_status(link, ec)) && !fs::is_symlink(fs::symlink_status(link, ec))) return;
  fs::remove(temporary, ec);
  fs::create_directory_symlink(run_name, temporary, ec);
  if (!ec) fs::rename(temporary, link, ec);
  if (ec) fs::remove(temporary, ec);
}
}  // namespace

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
    if (fs::create_directory(dir, ec)) {  // atomic: fails if another run took the name
      point_latest_at(runs_root, dir.filename());
      return dir;
    }
    if (ec) throw std::runtime_error("cannot create run directory " + dir.string() + ": " + ec.message());
  }
  throw std::runtime_error("cannot find a free run directory name under " + runs_root.string());
}

void save_history(const fs::path& dir, const History& history) {
  write_file_atomic(dir / "history.json", history.to_json().dump(2) + "\n");
  write_file_atomic(dir / "history.csv", history.to_csv());
}

void save_checkpoint(const fs::path& path, ModelImpl& model, const Config& config, Trainer& trainer, const std::string& data_checksum) {
  const History& history = trainer.history();
  const Progress& progress = trainer.progress();
  const KerasOptimizer& optimizer = trainer.optimizer();
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kCheckpointFormat)));
  archive.write("config", c10::IValue(to_json(config).dump()));
  archive.write("history", c10::IValue(history.to_json().dump()));
  archive.write("progress", c10::IValue(progress.to_json().dump()));
  for (const auto& [name, tensor] : model.state()) archive.write("model." + name, tensor.detach().to(torch::kCPU).clone());
  archive.write("checksum", c10::IValue(model.state_checksum()));
  if (!data_checksum.empty()) archive.write("data_checksum", c10::IValue(data_checksum));
  for (const auto& [name, tensor] : trainer.best_state()) archive.write("best." + name, tensor.detach().to(torch::kCPU).clone());
  const auto state = optimizer.state();
  for (size_t i = 0; i < state.size(); ++i) archive.write("optimizer." + std::to_string(i), state[i].to(torch::kCPU));
  // A run trained on a given data order resumes on it: the checkpoint carries it (int32, 240 KB per MNIST epoch).
  if (trainer.data_order().defined()) archive.write("data_order", trainer.data_order().to(torch::kInt));
  // Serialise in memory, then write with checked I/O: LibTorch's file writer throws from a
  // destructor when the disk fills, which aborts the program.
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str());
}

Checkpoint read_checkpoint(const fs::path& path) {
  const std::string what = "model file " + path.string();
  require_regular_file(path, "model file");
  torch::serialize::InputArchive archive;
  std::string format, config_text, history_text, progress_text;
  try {
    archive.load_from(path.string(), torch::kCPU);
    format = read_string(archive, "format");
    config_text = read_string(archive, "config");
    history_text = read_string(archive, "history");
    progress_text = read_string(archive, "progress");
  } catch (const c10::Error&) {
    throw std::runtime_error(what + " is not a checkpoint written by `mnist train` (unreadable or truncated)");
  }
  if (format != kCheckpointFormat) throw std::runtime_error(what + " has format \"" + format + "\", expected " + kCheckpointFormat);
  Checkpoint c;
  c10::IValue checksum;
  if (archive.try_read("checksum", checksum) && checksum.isString()) c.checksum = checksum.toStringRef();
  c10::IValue data_checksum;
  if (archive.try_read("data_checksum", data_checksum) && data_checksum.isString()) c.data_checksum = data_checksum.toStringRef();
  try {
    c.config = parse_config_text(config_text, path.string());
  } catch (const UsageError& e) {
    throw std::runtime_error(what + " holds an invalid config: " + e.what());
  }
  Model shape_source(c.config.model, kImageShape, 0);
  for (const auto& [name, tensor] : shape_source->state()) {
    torch::Tensor stored;
    if (!archive.try_read("model." + name, stored))
      throw std::runtime_error(what + " lacks tensor " + name + " that its config needs");
    c.params[name] = stored;
    if (archive.try_read("best." + name, stored)) c.best_state[name] = stored;
  }
  for (int i = 0; i < 4; ++i) {
    torch::Tensor t;
    if (!archive.try_read("optimizer." + std::to_string(i), t)) throw std::runtime_error(what + " lacks its optimizer state");
    c.optimizer_state.push_back(t);
  }
  torch::Tensor order;
  if (archive.try_read("data_order", order)) {
    if (order.dim() != 2 || order.scalar_type() != torch::kInt || order.size(0) < c.config.training.epochs)
      throw std::runtime_error(what + " holds a data order that does not cover its config's epochs");
    c.data_order = order.to(torch::kLong);
  }
  try {
    c.history = History::from_json(parse_json(history_text, /*max_depth=*/16), what);
    c.progress = Progress::from_json(parse_json(progress_text, /*max_depth=*/16));
  } catch (const std::exception& e) {
    throw std::runtime_error(what + " has an unreadable history or progress record (" + e.what() + ")");
  }
  return c;
}

}  // namespace mnist
