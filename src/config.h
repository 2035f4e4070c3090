// config: the JSON run description, validated once into typed structs whose names and defaults
// are Keras's (units, activation, learning_rate, beta_1, validation_split, ...). Nothing past this
// module sees JSON: a bad value is reported here with its JSON path, or never.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "activation.h"

namespace mnist {


enum class Padding { valid, same };
using Pair = std::array<int64_t, 2>;  // (height, width), as Keras's kernel_size / strides / pool_size

// One struct per Keras layer type, its fields named and defaulted as in keras.layers; a new layer
// type is a new alternative in LayerSpec::params (and a class in layers.cpp).
struct FlattenSpec {};
struct ReshapeSpec {
  std::vector<int64_t> target_shape;  // Keras order: (height, width, channels) or (features); one -1 allowed
};
struct DenseSpec {
  int64_t units = 0;
  Activation activation = Activation::linear;  // Keras Dense default: no activation
  bool use_bias = true;
};
struct Conv2DSpec {
  int64_t filters = 0;
  Pair kernel_size{0, 0};
  Pair strides{1, 1};
  Padding padding = Padding::valid;
  Activation activation = Activation::linear;
  bool use_bias = true;
};
struct Pooling2DSpec {  // MaxPooling2D and AveragePooling2D
  bool max = true;
  Pair pool_size{2, 2};
  Pair strides{2, 2};  // Keras: strides=None means pool_size
  Padding padding = Padding::valid;
};
struct GlobalAveragePooling2DSpec {};
struct DropoutSpec {
  double rate = 0;
};
struct BatchNormalizationSpec {  // Keras's defaults, not LibTorch's (momentum 0.1 the other way round, eps 1e-5)
  double momentum = 0.99, epsilon = 1e-3;
  bool center = true, scale = true;
};
struct ActivationSpec {
  Activation activation = Activation::linear;
};
struct LayerSpec {
  std::string type;  // Keras class name: "Flatten", "Dense", "Conv2D", ...
  std::string name;  // Keras-style auto name ("dense", "dense_1") unless the config gives one
  std::variant<FlattenSpec, ReshapeSpec, DenseSpec, Conv2DSpec, Pooling2DSpec, GlobalAveragePooling2DSpec, DropoutSpec,
               BatchNormalizationSpec, ActivationSpec>
      params;
};

struct ModelConfig {
  std::vector<LayerSpec> layers;
};

// Keras defaults per optimizer (keras.optimizers.Adam / SGD / RMSprop); only the keys of the
// chosen optimizer are accepted in the config.
struct OptimizerConfig {
  std::string name = "adam";  // adam | adamw | sgd | rmsprop
  double learning_rate = 0.001;
  double beta_1 = 0.9, beta_2 = 0.999;  // adam
  double epsilon = 1e-7;                 // adam, adamw, rmsprop
  double weight_decay = 0.004;           // adamw (keras.optimizers.AdamW default)
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
  double label_smoothing = 0;  // as keras.losses.CategoricalCrossentropy's: y = y (1 - ls) + ls / classes
};

// keras.optimizers.schedules, stepped once per optimizer step; the initial rate is the optimizer's
// learning_rate. exponential_decay: lr * decay_rate^(step / decay_steps) (floored when staircase).
// cosine_decay: linear warm-up from lr to warmup_target over warmup_steps (when warmup_target > 0),
// then a cosine from there down to alpha times it over decay_steps (0: the rest of training).
struct ScheduleConfig {
  std::string name = "constant";  // constant | exponential_decay | cosine_decay
  int64_t decay_steps = 0;
  double decay_rate = 0.96;
  bool staircase = false;
  double alpha = 0;
  int64_t warmup_steps = 0;
  double warmup_target = 0;
};

// keras.callbacks.ReduceLROnPlateau and EarlyStopping, with their defaults. val_* monitors need a
// validation_split: selecting on the test set would make the test figure dishonest.
struct ReduceLROnPlateauConfig {
  bool enabled = false;
  std::string monitor = "val_loss";
  double factor = 0.1;
  int64_t patience = 10;
  double min_delta = 1e-4;
  int64_t cooldown = 0;
  double min_lr = 0;
};
struct EarlyStoppingConfig {
  bool enabled = false;
  std::string monitor = "val_loss";
  double min_delta = 0;
  int64_t patience = 0;
  bool restore_best_weights = false;
  int64_t start_from_epoch = 0;
};

// Random affine (and optionally elastic) distortions of each training batch, on the training
// device, named as keras.preprocessing.image.ImageDataGenerator names them. Shifts below 1 are
// fractions of the image size, from 1 up pixels (ImageDataGenerator's rule). All zero: off.
struct AugmentationConfig {
  double rotation_range = 0;      // degrees, uniform in [-r, r]
  double width_shift_range = 0;   // uniform in [-s, s]
  double height_shift_range = 0;
  double zoom_range = 0;          // scale uniform in [1 - z, 1 + z]
  std::string fill_mode = "nearest";  // nearest | constant (0)
  double elastic_alpha = 0;       // Simard et al. 2003 elastic distortion: displacement scale in pixels
  double elastic_sigma = 4;       // Gaussian smoothing of the displacement field, pixels
  bool enabled() const {
    return rotation_range > 0 || width_shift_range > 0 || height_shift_range > 0 || zoom_range > 0 || elastic_alpha > 0;
  }
};

// What Keras's "accuracy" takes the argmax of. Keras 3.9 and later (and every eager or JAX run):
// the model's outputs, so saturated sigmoids that tie at 1.0 count for the lowest of the tied
// classes. Keras 3.8 and earlier on TensorFlow in graph mode (model.fit's default, and what the
// paper ran): the logits, because TensorFlow's graph optimizer rewrites ArgMax(Sigmoid(z)) to
// ArgMax(z); ties then go to the larger logit. Only the reported accuracy differs, never the training.
enum class AccuracyArgmax { outputs, logits };

struct TrainingConfig {
  int64_t epochs = 1;       // keras Model.fit default
  int64_t batch_size = 32;  // keras Model.fit default
  bool shuffle = true;
  double validation_split = 0.0;
  uint64_t seed = 0;
  OptimizerConfig optimizer;
  LossConfig loss;
  ScheduleConfig lr_schedule;
  ReduceLROnPlateauConfig reduce_lr_on_plateau;
  EarlyStoppingConfig early_stopping;
  AugmentationConfig augmentation;
  AccuracyArgmax accuracy_argmax = AccuracyArgmax::outputs;
  // Not a Keras knob: train Flatten/Dense models on the CPU with the fused step (fused.h), which
  // computes what the autograd step does several times faster; false: always the autograd step.
  bool fused = true;
  // Not a Keras knob: on CUDA, replay each epoch after the first as one CUDA graph (graph.h);
  // false: the eager loop, one host launch per kernel.
  bool cuda_graph = true;
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

// The activation whose argmax Keras's accuracy takes: the output layer's, or linear (the logits).
inline Activation accuracy_activation(Activation output, const TrainingConfig& t) {
  return t.accuracy_argmax == AccuracyArgmax::logits ? Activation::linear : output;
}

// Classes of the dataset, in label order.
std::vector<std::string> class_names(const std::string& dataset);

}  // namespace mnist
