// export: models out of and back into the program. `model.pt` is a real TorchScript module (one
// submodule per layer with tensors under its Keras name: "dense.weight", "conv2d.bias",
// "batch_normalization.running_var", ...,
// and a `forward` generated from the config's layer list), loadable with torch::jit::load in C++
// and torch.jit.load in Python without this code. It carries the resolved config, the class names
// and the preprocessing as extra files. `<stem>_weights.pt` is a plain dict of tensors that
// Python's torch.load reads as a state_dict.
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/script.h>

#include "config/config.h"
#include "model/model.h"

namespace mnist {

inline constexpr const char* kExportFormat = "mnist-libtorch-torchscript/1";

// The TorchScript source of forward() for a config's layers (exposed for tests and the curious).
std::string torchscript_forward(const ModelImpl& model);

torch::jit::Module to_torchscript(ModelImpl& model);

// Writes `path` (TorchScript) and its weights file, each atomically. Returns the weights path.
std::filesystem::path export_model(ModelImpl& model, const Config& config, const std::filesystem::path& path);

std::filesystem::path weights_path_for(const std::filesystem::path& model_path);  // model.pt -> model_weights.pt

// A dict of tensors in the file format of Python's torch.save (a zip archive holding a plain-dict
// pickle), which torch.load reads with its default weights_only=True (PyTorch 2.6 and later).
// torch::pickle_save tags the dict with its C++ type, a global that weights_only refuses.
std::vector<char> save_tensor_dict(const c10::Dict<std::string, torch::Tensor>& tensors);

// The file a model path names: a run directory's checkpoint.pt, or the path itself.
std::filesystem::path model_file_of(const std::string& path);

struct LoadedModel {
  Config config;
  Model model;
};
// Accepts an exported model.pt, a checkpoint.pt, or a run directory (its checkpoint.pt). Throws
// std::runtime_error naming the file when it is neither, is truncated, or its parameters do not
// fit its config.
LoadedModel load_model(const std::string& path);

// A model of `config` holding `params` (by name, as ModelImpl::state()); `what` names the source in
// errors. With `checksum` (ModelImpl::state_checksum() of the model that was saved), a model whose
// values do not match it is refused as damaged.
Model model_with_params(const Config& config, const std::map<std::string, torch::Tensor>& params, const std::string& what,
                        const std::string& checksum = "");

}  // namespace mnist
