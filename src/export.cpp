// export: TorchScript generation, extra files, the weights-only pickle.
#include "export.h"

#include <fstream>
#include <sstream>

#include "rundir.h"

namespace mnist {
namespace {

std::string activation_source(Activation a) {
  switch (a) {
    case Activation::relu: return "torch.relu(x)";
    case Activation::sigmoid: return "torch.sigmoid(x)";
    case Activation::softmax: return "torch.softmax(x, -1)";
    case Activation::tanh: return "torch.tanh(x)";
    case Activation::linear: break;
  }
  return "x";
}

// TorchScript cannot resolve torch.nn.functional without Python, so Dense is written with aten ops.
torch::jit::Module dense_module(const std::string& name, const torch::Tensor& weight, const torch::Tensor& bias) {
  torch::jit::Module m("Dense_" + name);
  m.register_parameter("weight", weight.detach().to(torch::kCPU).clone(), false);
  if (bias.defined()) {
    m.register_parameter("bias", bias.detach().to(torch::kCPU).clone(), false);
    m.define("def forward(self, x: Tensor) -> Tensor:\n  return torch.addmm(self.bias, x, self.weight.t())\n");
  } else {
    m.define("def forward(self, x: Tensor) -> Tensor:\n  return torch.mm(x, self.weight.t())\n");
  }
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

std::string torchscript_forward(const ModelConfig& config) {
  std::string src = "def forward(self, x: Tensor) -> Tensor:\n  if x.dim() == 3:\n    x = x.unsqueeze(1)\n";
  for (const auto& layer : config.layers) {
    if (std::holds_alternative<FlattenSpec>(layer.params)) {
      src += "  x = torch.flatten(x, 1)\n";
    } else {
      src += "  x = self." + layer.name + ".forward(x)\n";
      const auto act = std::get<DenseSpec>(layer.params).activation;
      if (act != Activation::linear) src += "  x = " + activation_source(act) + "\n";
    }
  }
  return src + "  return x\n";
}

torch::jit::Module to_torchscript(ModelImpl& model, const Config& config) {
  torch::jit::Module m("MnistModel");
  const auto params = model.named_parameters();
  for (const auto& layer : config.model.layers) {
    if (!std::holds_alternative<DenseSpec>(layer.params)) continue;
    const torch::Tensor* bias = params.find(layer.name + ".bias");
    m.register_module(layer.name, dense_module(layer.name, params[layer.name + ".weight"], bias ? *bias : torch::Tensor()));
  }
  m.define(torchscript_forward(config.model));
  m.eval();
  return m;
}

std::filesystem::path weights_path_for(const std::filesystem::path& model_path) {
  return model_path.parent_path() / (model_path.stem().string() + "_weights.pt");
}

std::filesystem::path export_model(ModelImpl& model, const Config& config, const std::filesystem::path& path) {
  const torch::jit::Module m = to_torchscript(model, config);
  torch::jit::ExtraFilesMap extra = {{"format", kExportFormat},
                                     {"config.json", to_json(config).dump(2)},
                                     {"classes.json", nlohmann::json(class_names(config.dataset)).dump()},
                                     {"preprocessing.json", preprocessing_json(config)}};
  std::ostringstream module_bytes;  // in memory first: see save_checkpoint
  m.save(module_bytes, extra);
  write_file_atomic(path, module_bytes.str());
  c10::Dict<std::string, torch::Tensor> state;
  for (const auto& p : model.named_parameters()) state.insert(p.key(), p.value().detach().to(torch::kCPU).clone());
  const std::vector<char> bytes = torch::pickle_save(state);
  const auto weights = weights_path_for(path);
  write_file_atomic(weights, std::string(bytes.begin(), bytes.end()));
  return weights;
}

Model model_with_params(const Config& config, const std::map<std::string, torch::Tensor>& params, const std::string& what) {
  Model model(config.model, kImageShape, config.training.seed);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    const auto it = params.find(p.key());
    if (it == params.end()) throw std::runtime_error(what + " lacks parameter " + p.key() + " that its config needs");
    if (it->second.sizes() != p.value().sizes())
      throw std::runtime_error(what + ": parameter " + p.key() + " has shape " + c10::str(it->second.sizes()) +
                               " but its config needs " + c10::str(p.value().sizes()));
    p.value().copy_(it->second);
  }
  return model;
}

LoadedModel load_model(const std::string& path_arg) {
  std::filesystem::path path(path_arg);
  if (std::filesystem::is_directory(path)) path /= "checkpoint.pt";
  const std::string what = "model file " + path.string();
  if (!std::filesystem::exists(path)) throw std::runtime_error(what + " does not exist: pass a model.pt, a checkpoint.pt or a run directory");
  torch::jit::ExtraFilesMap extra = {{"format", ""}, {"config.json", ""}};
  torch::jit::Module m;
  try {
    m = torch::jit::load(path.string(), torch::kCPU, extra);
  } catch (const c10::Error&) {
    throw std::runtime_error(what + " is not a model written by `mnist` (not a TorchScript archive, or truncated)");
  }
  if (extra["format"] != kExportFormat) {  // not an export: a training checkpoint
    Checkpoint c = read_checkpoint(path);
    return {c.config, model_with_params(c.config, c.params, what)};
  }
  Config config;
  try {
    config = parse_config_text(extra["config.json"], path.string());
  } catch (const std::exception& e) {
    throw std::runtime_error(what + " holds an invalid config: " + e.what());
  }
  std::map<std::string, torch::Tensor> params;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) params[p.name] = p.value;
  return {config, model_with_params(config, params, what)};
}

}  // namespace mnist
