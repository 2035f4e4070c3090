// keras_import: Keras weights in and out. Reads the list that Keras's model.get_weights() returns,
// saved as JSON nested lists in layer order: per Dense layer its kernel [inputs, units] (transposed
// relative to torch's Linear weight [units, inputs]) and, with use_bias, its bias [units]; per
// Conv2D its kernel [kh, kw, in, out] and bias; per BatchNormalization gamma, beta, moving_mean,
// moving_variance. Every array is checked against the config before anything is built. Writes
// the same list from our model, which Keras's model.set_weights() takes.
#pragma once
#include <filesystem>
#include <map>
#include <string>

#include <torch/torch.h>

#include "config.h"
#include "model.h"

namespace mnist {

// Parameters by our names ("dense.weight", ...). Throws std::runtime_error naming the file, the
// array index, the layer and the dimension that does not match.
std::map<std::string, torch::Tensor> read_keras_weights(const std::filesystem::path& file, const Config& config);
// The same on the file's text; `name` stands for the file in errors (the fuzzer's entry point).
std::map<std::string, torch::Tensor> parse_keras_weights(const std::string& text, const Config& config, const std::string& name);

// The model's weights as that JSON list, in Keras's layouts: what `mnist export --out FILE.json` writes.
nlohmann::json keras_weights_json(ModelImpl& model);

}  // namespace mnist
