// export: TorchScript generation, extra files, the weights-only pickle.
#include "interop/export.h"

#include <fstream>
#include <sstream>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include "config/user_input.h"
#include "interop/checkpoint.h"
#include "interop/rundir.h"

namespace mnist {
namespace {

// A layer with tensors becomes a submodule under its Keras name whose forward is the layer's own
// script, so its tensors are "conv2d.weight", "batch_normalization.running_mean", ... TorchScript
// cannot resolve torch.nn.functional without Python, so the scripts use aten ops.
bool has_tensors(const Layer& layer) { return !layer.parameters().empty() || !layer.buffers().empty(); }

torch::jit::Module layer_module(const Layer& layer) {
  torch::jit::Module m(layer.type + "_" + layer.name);
  for (const auto& p : layer.named_parameters(/*recurse=*/false))
    m.register_parameter(p.key(), p.value().detach().to(torch::kCPU).clone(), false);
  for (const auto& b : layer.named_buffers(/*recurse=*/false))
    m.register_buffer(b.key(), b.value().detach().to(torch::kCPU).clone());
  m.define("def forward(self, x: Tensor) -> Tensor:\n" + layer.script() + "  return x\n");
  return m;
}

std::string preprocessing_json(const Config& config) {
  const auto last = std::get<DenseSpec>(config.model.layers.back().params).activation;
  return nlohmann::json{{"input", "float32 tensor [N, 1, 28, 28] or [N, 28, 28]"},
                        {"scale", "pixel / 255, values in [0, 1]"},
                        {"polarity", "bright ink on a dark background, as in MNIST"},
                        {"layout", "digit scaled to fit 20x20 and centred by centre of mass in 28x28, as in MNIST"},
                        {"output", "[N, " + std::to_string(class_names(config.dataset).size()) + "] " + to_string(last) +
                                       " outputs, one per class in classes.json order"}}
      .dump(2);
}

}  // namespace

std::string torchscript_forward(const ModelImpl& model) {
  std::string src = "def forward(self, x: Tensor) -> Tensor:\n  if x.dim() == 3:\n    x = x.unsqueeze(1)\n";
  for (const auto& layer : model.layers()) {
    src += has_tensors(*layer) ? "  x = self." + layer->name + ".forward(x)\n" : layer->script();
    if (layer->activation != Activation::linear) src += "  x = " + std::string(info(layer->activation).torchscript) + "\n";
  }
  return src + "  return x\n";
}

torch::jit::Module to_torchscript(ModelImpl& model) {
  torch::jit::Module m("MnistModel");
  for (const auto& layer : model.layers())
    if (has_tensors(*layer)) m.register_module(layer->name, layer_module(*layer));
  m.define(torchscript_forward(model));
  m.eval();
  return m;
}

std::filesystem::path weights_path_for(const std::filesystem::path& model_path) {
  return model_path.parent_path() / (model_path.stem().string() + "_weights.pt");
}

// torch::pickle_save's own steps, with the pickler's type tags off.
std::vector<char> save_tensor_dict(const c10::Dict<std::string, torch::Tensor>& tensors) {
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* bytes, size_t n) { pickle.insert(pickle.end(), bytes, bytes + n); },
                              /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
                              /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(tensors);
  pickler.stop();
  std::vector<char> archive;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
    const char* bytes = static_cast<const char*>(data);
    archive.insert(archive.end(), bytes, bytes + n);
    return n;
  });
  torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  return archive;
}

std::filesystem::path export_model(ModelImpl& model, const Config& config, const std::filesystem::path& path) {
  const torch::jit::Module m = to_torchscript(model);
  torch::jit::ExtraFilesMap extra = {{"format", kExportFormat},
                                     {"config.json", to_json(config).dump(2)},
                                     {"classes.json", nlohmann::json(class_names(config.dataset)).dump()},
                                     {"preprocessing.json", preprocessing_json(config)},
                                     {"checksum", model.state_checksum()}};
  std::ostringstream module_bytes;  // in memory first: see save_checkpoint
  m.save(module_bytes, extra);
  write_file_atomic(path, module_bytes.str());
  c10::Dict<std::string, torch::Tensor> state;
  for (const auto& [name, tensor] : model.state()) state.insert(name, tensor.detach().to(torch::kCPU).clone());
  const std::vector<char> bytes = save_tensor_dict(state);
  const auto weights = weights_path_for(path);
  write_file_atomic(weights, std::string(bytes.begin(), bytes.end()));
  return weights;
}

Model model_with_params(const Config& config, const std::map<std::string, torch::Tensor>& params, const std::string& what,
                        const std::string& checksum) {
  Model model(config.model, kImageShape, config.training.seed);
  model->load_state(params, what);
  if (!checksum.empty() && model->state_checksum() != checksum)
    throw std::runtime_error(what + " is damaged: its weights do not match the checksum written with them (" + checksum + ")");
  return model;
}

std::filesystem::path model_file_of(const std::string& path) {
  return std::filesystem::is_directory(path) ? std::filesystem::path(path) / "checkpoint.pt" : std::filesystem::path(path);
}

LoadedModel load_model(const std::string& path_arg) {
  const std::filesystem::path path = model_file_of(path_arg);
  const std::string what = "model file " + path.string();
  if (!std::filesystem::exists(path)) throw std::runtime_error(what + " does not exist: pass a model.pt, a checkpoint.pt or a run directory");
  require_regular_file(path, "model file");
  torch::jit::ExtraFilesMap extra = {{"format", ""}, {"config.json", ""}, {"checksum", ""}};
  torch::jit::Module m;
  try {
    m = torch::jit::load(path.string(), torch::kCPU, extra);
  } catch (const c10::Error&) {
    throw std::runtime_error(what + " is not a model written by `mnist` (not a TorchScript archive, or truncated)");
  }
  if (extra["format"] != kExportFormat) {  // not an export: a training checkpoint
    Checkpoint c = read_checkpoint(path);
    return {c.config, model_with_params(c.config, c.params, what, c.checksum)};
  }
  Config config;
  try {
    config = parse_config_text(extra["config.json"], path.string());
  } catch (const std::exception& e) {
    throw std::runtime_error(what + " holds an invalid config: " + e.what());
  }
  std::map<std::string, torch::Tensor> params;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) params[p.name] = p.value;
  for (const auto& b : m.named_buffers(/*recurse=*/true)) params[b.name] = b.value;
  return {config, model_with_params(config, params, what, extra["checksum"])};
}

}  // namespace mnist
