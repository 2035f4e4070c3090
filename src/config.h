// config: the JSON run description, validated once into typed structs whose names and defaults
// are Keras's (units, activation, learning_rate, beta_1, validation_split, ...). Nothing past this
// module sees JSON: a bad value is reported here with its JSON path, or never.
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace mnist {

enum class Activation { linear, relu, sigmoid, softmax, tanh };
std::string to_string(Activation a);

// One struct per Keras layer type; a new layer type is a new alternative in LayerSpec::params.
struct FlattenSpec {};
struct DenseSpec {
  int64_t units = 0;
  Activation activation = Activation::linear;  // Keras Dense default: no activation
  bool use_bias = true;
};
struct LayerSpec {
  std::string type;  // Keras class name: "Flatten", "Dense"
  std::string name;  // Keras-style auto name ("dense", "dense_1") unless the config gives one
  std::variant<FlattenSpec, DenseSpec> params;
};

struct ModelConfig {
  std::vector<LayerSpec> layers;
};

// Keras defaults per optimizer (keras.optimizers.Adam / SGD / RMSprop); only the keys of the
// chosen optimizer are accepted in the config.
struct OptimizerConfig {
  std::string name = "adam";  // adam | sgd | rmsprop
  double learning_rate = 0.001;
  double beta_1 = 0.9, beta_2 = 0.999;  // adam
  double epsilon = 1e-7;                 // adam, rmsprop
  double rho = 0.9;                      // rmsprop
  double momentum = 0.0;                 // sgd, rmsprop
  bool nesterov = false;                 // sgd
  bool centered = false;                 // rmsprop
};

enum class LossSemantics { tensorflow, renormalized };

struct LossConfig {
  std::string name = "sparse_categorical_crossentropy";
  LossSemantics semantics = LossSemantics::tensorflow;
  bool from_logits = false;
};

struct TrainingConfig {
  int64_t epochs = 1;       // keras Model.fit default
  int64_t batch_size = 32;  // keras Model.fit default
  bool shuffle = true;
  double validation_split = 0.0;
  uint64_t seed = 0;
  OptimizerConfig optimizer;
  LossConfig loss;
};

struct Config {
  std::string name;
  std::string dataset = "mnist";  // mnist | fashion-mnist
  ModelConfig model;
  TrainingConfig training;
};

// Parse and validate. `origin` names the source in errors (a file path). Throws ConfigError.
Config parse_config(const nlohmann::json& j);
Config load_config_file(const std::string& path);
Config parse_config_text(const std::string& text, const std::string& origin);

// The fully resolved config (every default written out): what a run directory stores.
nlohmann::json to_json(const Config& c);

// Apply "--set a.b.c=value" overrides to the resolved config and re-validate. The path must exist
// in the resolved config (array elements by index: model.layers.1.units or model.layers[1].units);
// the value is read as JSON when it parses, else as a string. Setting training.optimizer.name
// resets the optimizer to that optimizer's Keras defaults. Throws UsageError/ConfigError.
Config apply_overrides(const Config& c, const std::vector<std::string>& assignments);

// Classes of the dataset, in label order.
std::vector<std::string> class_names(const std::string& dataset);

}  // namespace mnist
