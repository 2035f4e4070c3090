// checkpoint: the schema (checkpoint_fields), and one writer and one reader per kind of entry.
#include "interop/checkpoint.h"

#include <sstream>

#include "config/errors.h"
#include "config/user_input.h"
#include "interop/rundir.h"
#include "train/clock.h"
#include "train/train.h"

namespace mnist {
namespace {

constexpr const char* kFormat = "mnist-libtorch-checkpoint/";
constexpr int kVersion = 2;  // written; every version from 1 is read

enum Presence { kRequired, kOptional };

// Every entry of a checkpoint after "format", in the order written. The config comes first: reading
// the tensors needs it. A key ending in "." is a prefix, one entry per name.
template <class C, class F>
void checkpoint_fields(C& c, F&& f) {
  f("config", c.config, kRequired);
  f("history", c.history, kRequired);
  f("progress", c.progress, kRequired);
  f("model.", c.params, kRequired);  // ModelImpl::state() names
  f("checksum", c.checksum, kOptional);
  f("data_checksum", c.data_checksum, kOptional);
  f("best.", c.best_state, kOptional);
  f("optimizer.", c.optimizer, kRequired);  // by slot name, and iterations (version 1: numbered)
  f("data_order", c.data_order, kOptional);  // int32 [epochs, samples]: a run trained on a given order resumes on it
}

// ---- writing: one overload per kind of entry ----

struct Writer {
  torch::serialize::OutputArchive& archive;

  void text(const std::string& key, const std::string& value) { archive.write(key, c10::IValue(value)); }
  void operator()(const std::string& key, const Config& c, Presence) { text(key, to_json(c).dump()); }
  void operator()(const std::string& key, const History& h, Presence) { text(key, h.to_json().dump()); }
  void operator()(const std::string& key, const Progress& p, Presence) { text(key, p.to_json().dump()); }
  void operator()(const std::string& key, const std::string& s, Presence) {
    if (!s.empty()) text(key, s);
  }
  void operator()(const std::string& prefix, const std::map<std::string, torch::Tensor>& tensors, Presence) {
    for (const auto& [name, t] : tensors) archive.write(prefix + name, t.detach().to(torch::kCPU).clone());
  }
  void operator()(const std::string& prefix, const OptimizerState& o, Presence) {
    for (const auto& [name, t] : o.slots) archive.write(prefix + name, t.to(torch::kCPU));
    archive.write(prefix + "iterations", torch::tensor(o.iterations, torch::kLong));
  }
  void operator()(const std::string& key, const torch::Tensor& order, Presence) {
    if (order.defined()) archive.write(key, order.to(torch::kInt));  // 240 KB per MNIST epoch
  }
};

// ---- reading ----

struct Reader {
  torch::serialize::InputArchive& archive;
  int version;
  std::string file, what;  // the path, and "model file PATH"
  const Config* config = nullptr;

  // A text entry; a required one that is missing means the file is no checkpoint of ours.
  std::string text(const std::string& key, Presence presence) {
    c10::IValue v;
    if (archive.try_read(key, v) && v.isString()) return v.toStringRef();
    if (presence == kRequired) throw std::runtime_error(what + " is not a checkpoint written by `mnist train` (unreadable or truncated)");
    return "";
  }
  // A JSON record (the history, the progress), parsed by `parse`.
  template <class T, class Parse>
  void record(const std::string& key, T& out, Parse parse) {
    const std::string json = text(key, kRequired);
    try {
      out = parse(parse_json(json, /*max_depth=*/16));
    } catch (const std::exception& e) {
      throw std::runtime_error(what + " has an unreadable history or progress record (" + e.what() + ")");
    }
  }
  void operator()(const std::string& key, Config& c, Presence presence) {
    const std::string json = text(key, presence);
    try {
      c = parse_config_text(json, file);
    } catch (const UsageError& e) {
      throw std::runtime_error(what + " holds an invalid config: " + e.what());
    }
    config = &c;
  }
  void operator()(const std::string& key, History& h, Presence) {
    record(key, h, [&](const nlohmann::json& j) { return History::from_json(j, what); });
  }
  void operator()(const std::string& key, Progress& p, Presence) { record(key, p, Progress::from_json); }
  void operator()(const std::string& key, std::string& s, Presence presence) { s = text(key, presence); }
  // The tensors the config's model has, by name.
  void operator()(const std::string& prefix, std::map<std::string, torch::Tensor>& tensors, Presence presence) {
    Model shape_source(config->model, kImageShape, 0);
    for (const auto& [name, unused] : shape_source->state()) {
      torch::Tensor stored;
      if (archive.try_read(prefix + name, stored))
        tensors[name] = stored;
      else if (presence == kRequired)
        throw std::runtime_error(what + " lacks tensor " + name + " that its config needs");
    }
  }
  void operator()(const std::string& prefix, OptimizerState& o, Presence) {
    // A fresh tensor per entry: try_read sets a defined tensor's storage in place.
    auto entry = [&](const std::string& key) {
      torch::Tensor t;
      if (!archive.try_read(prefix + key, t)) throw std::runtime_error(what + " lacks its optimizer state");
      return t;
    };
    const std::vector<std::string> names = slot_names(config->training.optimizer.name);
    for (size_t k = 0; k < names.size(); ++k) o.slots.emplace_back(names[k], entry(version == 1 ? std::to_string(k) : names[k]));
    o.iterations = entry(version == 1 ? "3" : "iterations").item<int64_t>();
  }
  void operator()(const std::string& key, torch::Tensor& order, Presence) {
    torch::Tensor stored;
    if (!archive.try_read(key, stored)) return;
    if (stored.dim() != 2 || stored.scalar_type() != torch::kInt || stored.size(0) < config->training.epochs)
      throw std::runtime_error(what + " holds a data order that does not cover its config's epochs");
    order = stored.to(torch::kLong);
  }
};

// The schema version named by the "format" entry.
int format_version(torch::serialize::InputArchive& archive, const std::string& what) {
  c10::IValue v;
  if (!archive.try_read("format", v) || !v.isString())
    throw std::runtime_error(what + " is not a checkpoint written by `mnist train` (unreadable or truncated)");
  const std::string format = v.toStringRef();
  for (int version = 1; version <= kVersion; ++version)
    if (format == kFormat + std::to_string(version)) return version;
  throw std::runtime_error(what + " has format \"" + format + "\", expected " + kFormat + std::to_string(kVersion));
}

}  // namespace

Checkpoint checkpoint_of(ModelImpl& model, const Config& config, const Trainer& trainer, const std::string& data_checksum) {
  Checkpoint c;
  c.config = config;
  for (const auto& [name, tensor] : model.state()) c.params[name] = tensor;
  c.checksum = model.state_checksum();
  c.data_checksum = data_checksum;
  c.best_state = trainer.best_state();
  c.optimizer = trainer.optimizer().state();
  c.history = trainer.history();
  c.progress = trainer.progress();
  c.data_order = trainer.data_order();
  return c;
}

void save_checkpoint(const fs::path& path, const Checkpoint& checkpoint) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(kFormat + std::to_string(kVersion)));
  checkpoint_fields(checkpoint, Writer{archive});
  // Serialise in memory, then write with checked I/O: LibTorch's file writer throws from a
  // destructor when the disk fills, which aborts the program.
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, bytes.str());
}

void save_checkpoint(const fs::path& path, ModelImpl& model, const Config& config, const Trainer& trainer, const std::string& data_checksum) {
  save_checkpoint(path, checkpoint_of(model, config, trainer, data_checksum));
}

Checkpoint read_checkpoint(const fs::path& path) {
  const std::string what = "model file " + path.string();
  require_regular_file(path, "model file");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string(), torch::kCPU);
  } catch (const c10::Error&) {
    throw std::runtime_error(what + " is not a checkpoint written by `mnist train` (unreadable or truncated)");
  }
  Checkpoint c;
  Reader reader{archive, format_version(archive, what), path.string(), what};
  checkpoint_fields(c, reader);
  return c;
}

void RunCheckpoint::save(const History& history) {
  const auto start = Clock::now();
  save_checkpoint(dir_ / "checkpoint.pt", model_, config_, trainer_, data_checksum_);
  save_history(dir_, history);
  seconds += seconds_since(start);
}

}  // namespace mnist
