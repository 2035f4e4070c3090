// tensorboard_log: the run's TensorBoard callback; see tensorboard_log.h.
#include "interop/tensorboard_log.h"

#include <chrono>
#include <fstream>
#include <sstream>

namespace mnist {
namespace {

namespace fs = std::filesystem;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void flatten(const nlohmann::json& j, const std::string& path, std::map<std::string, EventFile::HParam>& out) {
  if (j.is_object())
    for (auto it = j.begin(); it != j.end(); ++it) flatten(it.value(), path.empty() ? it.key() : path + "." + it.key(), out);
  else if (j.is_array())
    for (size_t i = 0; i < j.size(); ++i) flatten(j[i], path + "[" + std::to_string(i) + "]", out);
  else if (j.is_boolean()) out[path] = j.get<bool>();
  else if (j.is_number()) out[path] = j.get<double>();
  else if (j.is_string()) out[path] = j.get<std::string>();
}

// A PNG's size and TensorBoard's colour space for it, from its header (IHDR: width, height, colour
// type); false for anything that is not a PNG.
bool png_header(const std::string& png, int& height, int& width, int& channels) {
  if (png.size() < 26 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0 || png.compare(12, 4, "IHDR") != 0) return false;
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(png[at + i]);
    return static_cast<int>(v);
  };
  width = be32(16);
  height = be32(20);
  const int colour_type = static_cast<unsigned char>(png[25]);  // 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
  channels = colour_type == 0 ? 1 : colour_type == 4 ? 2 : colour_type == 6 ? 4 : 3;
  return true;
}

// A layer's own parameter or buffer, as the values a histogram counts.
std::vector<double> values_of(const torch::nn::Module& layer, const std::string& name) {
  const torch::Tensor* p = layer.named_parameters(/*recurse=*/false).find(name);
  const torch::Tensor t = (p ? *p : layer.named_buffers(/*recurse=*/false)[name]).detach().to(torch::kCPU, torch::kDouble).contiguous();
  return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
}

}  // namespace

std::map<std::string, EventFile::HParam> hparams_of(const Config& config) {
  std::map<std::string, EventFile::HParam> out;
  flatten(to_json(config), "", out);
  return out;
}

TensorBoardLog::TensorBoardLog(const fs::path& run_dir, const Config& config, bool resumed)
    : run_dir_(run_dir), dir_(run_dir / "tensorboard"), config_(config.training.tensorboard) {
  if (resumed) return;
  file(hparams_, ".").hparams_start(hparams_of(config), config.name, now_seconds());
  file(train_, "train").text("config", 0, "```json\n" + to_json(config).dump(2) + "\n```");
}

EventFile& TensorBoardLog::file(std::unique_ptr<EventFile>& f, const char* name) {
  if (!f) f = std::make_unique<EventFile>(dir_ / name);
  return *f;
}

void TensorBoardLog::on_batch_end(int64_t, const std::function<EpochLogs()>& running, FitState& s) {
  const int64_t batch = s.optimizer.iterations();  // Keras's global batch: steps taken, from 1
  if (config_.update_freq <= 0 || batch % config_.update_freq != 0) return;
  const EpochLogs now = running();  // the epoch's running means so far, as Keras logs at a batch's end
  file(train_, "train").scalar("batch_loss", batch, static_cast<float>(now.loss));
  file(train_, "train").scalar("batch_accuracy", batch, static_cast<float>(now.accuracy));
}

void TensorBoardLog::on_epoch_end(int64_t epoch, const EpochLogs& logs, FitState& s) {
  EventFile& train = file(train_, "train");
  train.scalar("epoch_loss", epoch, static_cast<float>(logs.loss));
  train.scalar("epoch_accuracy", epoch, static_cast<float>(logs.accuracy));
  train.scalar("epoch_learning_rate", epoch, static_cast<float>(logs.learning_rate));
  if (logs.has_validation) {
    file(validation_, "validation").scalar("epoch_loss", epoch, static_cast<float>(logs.val_loss));
    file(validation_, "validation").scalar("epoch_accuracy", epoch, static_cast<float>(logs.val_accuracy));
  }
  file(test_, "test").scalar("epoch_loss", epoch, static_cast<float>(logs.test_loss));
  file(test_, "test").scalar("epoch_accuracy", epoch, static_cast<float>(logs.test_accuracy));
  if (config_.histogram_freq <= 0 || epoch % config_.histogram_freq != 0) return;
  for (const auto& layer : s.model->layers())  // tagged as Keras's weight.path: dense/kernel/histogram
    for (const KerasWeight& w : layer->keras_weights()) train.histogram(layer->name + "/" + w.role + "/histogram", epoch, values_of(*layer, w.tensor));
}

void TensorBoardLog::finish(int64_t epochs, bool success) {
  const int64_t step = std::max<int64_t>(epochs - 1, 0);
  for (const char* name : {"confusion_matrix", "confusion_matrix_normalized", "misclassified"}) {
    std::ifstream in(run_dir_ / (std::string(name) + ".png"), std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    int height = 0, width = 0, channels = 0;
    if (in && png_header(bytes.str(), height, width, channels)) file(test_, "test").image(name, step, bytes.str(), height, width, channels);
  }
  file(hparams_, ".").hparams_end(success, now_seconds());
}

}  // namespace mnist
