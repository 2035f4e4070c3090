// keras_import: Keras weights in and out, in the three forms a Keras user holds them.
//   FILE.json        the list model.get_weights() returns, as nested JSON lists in layer order
//   FILE.weights.h5  model.save_weights()'s HDF5 file (layout: keras_files.h)
//   FILE.keras       model.save()'s archive: the model's config (keras_config.h) and its weights
// Per Dense layer Keras holds its kernel [inputs, units] (transposed relative to torch's Linear
// weight [units, inputs]) and, with use_bias, its bias [units]; per Conv2D its kernel [kh, kw, in,
// out] and bias; per BatchNormalization gamma, beta, moving_mean, moving_variance. Every array is
// checked against the config (count, shape, finite values) before anything is built, and every
// error is one line naming the file, the array and the layer.
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "model/model.h"

namespace mnist {

using Params = std::map<std::string, torch::Tensor>;  // by our names: "dense.weight", ...

// Weights for `config`'s layers from FILE.json, FILE.weights.h5 or FILE.keras (its weights only),
// chosen by the file's name. Throws std::runtime_error.
Params read_keras_weights(const std::filesystem::path& file, const Config& config);
// The same on a file's contents; `name` stands for the file in errors (the fuzzers' entry points).
Params parse_keras_weights(const std::string& text, const Config& config, const std::string& name);     // JSON
Params parse_keras_weights_h5(const std::string& bytes, const Config& config, const std::string& name);  // HDF5

// A .keras archive: the model's config, converted to ours, and its weights. Throws std::runtime_error.
struct KerasModel {
  Config config;
  Params params;
  std::vector<std::string> notes;  // compile() arguments that did not carry over (keras_config.h)
};
KerasModel read_keras_model(const std::filesystem::path& file);
KerasModel parse_keras_model(const std::string& bytes, const std::string& name);

bool is_keras_model_file(const std::filesystem::path& file);    // FILE.keras
bool is_keras_weights_h5_file(const std::filesystem::path& file);  // FILE.weights.h5 (any FILE.h5)

// The model's weights in Keras's layouts: the get_weights() list (for model.set_weights()), a
// .weights.h5 file (for model.load_weights()) and a .keras archive (for keras.saving.load_model()).
nlohmann::json keras_weights_json(const ModelImpl& model);
std::string keras_weights_h5(const ModelImpl& model, const std::string& model_name);
std::string keras_model_archive(const ModelImpl& model, const Config& config);

}  // namespace mnist
