// config: the JSON run description, validated once into typed structs whose names and defaults
// are Keras's (units, activation, learning_rate, beta_1, validation_split, ...). Nothing past this
// module sees JSON: a bad value is reported here with its JSON path, or never.
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "math/activation_names.h"

namespace mnist {

// ---- How a config declares its fields ----------------------------------------------------------
// Each struct below lists its fields once, in a static `fields(self, f)`: f(json key, member, rule)
// for every key the config may hold, in the order a resolved config shows them. That one list
// drives reading a config (config.cpp: defaults are the members' initialisers, unknown keys are
// errors), writing the resolved config (to_json, so also --set) and the Keras import and export
// (keras_config.cpp). A field that only some values of `name` take is listed under an `if`. Reading
// calls fields() on a mutable struct, writing and listing on a const one, so a default that follows
// from a field read before it is set under `if constexpr (!std::is_const_v<S>)` (Pooling2DSpec's
// strides, a callback section that turns itself on).

inline constexpr double kNoLimit = std::numeric_limits<double>::infinity();

// What a number must satisfy (each end of its range open or closed; for a pair, each entry), and
// whether the key must be given.
struct Rule {
  double lo = -kNoLimit, hi = kNoLimit;
  bool lo_open = false, hi_open = false;
  bool required = false;
  const char* note = "";  // said after the rule, e.g. why the limit is there
  constexpr Rule needed() const { Rule r = *this; r.required = true; return r; }
  constexpr Rule because(const char* why) const { Rule r = *this; r.note = why; return r; }
};
constexpr Rule at_least(double lo) { return {lo, kNoLimit}; }
constexpr Rule above(double lo) { return {lo, kNoLimit, /*lo_open=*/true}; }
constexpr Rule between(double lo, double hi) { return {lo, hi}; }
constexpr Rule fraction() { return {0, 1, false, /*hi_open=*/true}; }  // [0, 1)
constexpr Rule needed() { return Rule{}.needed(); }

// Every word a config may hold for an enum, in a table named by names_of(E).
template <class E>
struct Named {
  E value;
  const char* name;
};
inline const auto& names_of(Activation) { return kActivations; }
template <class E>
const char* name_of(E value) {
  for (const auto& n : names_of(value))
    if (n.value == value) return n.name;
  return "?";
}

enum class Dataset { mnist, fashion_mnist };
inline constexpr Named<Dataset> kDatasets[] = {{Dataset::mnist, "mnist"}, {Dataset::fashion_mnist, "fashion-mnist"}};
inline const auto& names_of(Dataset) { return kDatasets; }

// ---- model ---------------------------------------------------------------------------------------
enum class Padding { valid, same };
inline constexpr Named<Padding> kPaddings[] = {{Padding::valid, "valid"}, {Padding::same, "same"}};
inline const auto& names_of(Padding) { return kPaddings; }
using Pair = std::array<int64_t, 2>;  // (height, width), as Keras's kernel_size / strides / pool_size

// One struct per Keras layer type (kType: Keras's class name), its fields named and defaulted as in
// keras.layers. A new layer type is a struct here, an alternative in LayerParams, and a class in
// layers.cpp. keras_constants(): keys Keras's config of the layer has that this program fixes (the
// import requires those values, the export writes them).
struct FlattenSpec {
  static constexpr const char* kType = "Flatten";
  static nlohmann::json keras_constants() { return {{"data_format", "channels_last"}}; }
  template <class S, class F> static void fields(S&, F&&) {}
};
struct TargetShape {  // Keras order: (height, width, channels) or (features); one -1 allowed
  std::vector<int64_t> dims;
};
struct ReshapeSpec {
  static constexpr const char* kType = "Reshape";
  TargetShape target_shape;
  template <class S, class F> static void fields(S& s, F&& f) { f("target_shape", s.target_shape, needed()); }
};
struct DenseSpec {
  static constexpr const char* kType = "Dense";
  int64_t units = 0;
  Activation activation = Activation::linear;  // Keras Dense default: no activation
  bool use_bias = true;
  template <class S, class F> static void fields(S& s, F&& f) {
    f("units", s.units, between(1, 1 << 20).needed());
    f("activation", s.activation);
    f("use_bias", s.use_bias);
  }
};
struct Conv2DSpec {
  static constexpr const char* kType = "Conv2D";
  static nlohmann::json keras_constants() {
    return {{"data_format", "channels_last"}, {"dilation_rate", {1, 1}}, {"groups", 1}};
  }
  int64_t filters = 0;
  Pair kernel_size{0, 0};
  Pair strides{1, 1};
  Padding padding = Padding::valid;
  Activation activation = Activation::linear;
  bool use_bias = true;
  template <class S, class F> static void fields(S& s, F&& f) {
    f("filters", s.filters, between(1, 65536).needed());
    f("kernel_size", s.kernel_size, between(1, 1024).needed());
    f("strides", s.strides, between(1, 1024));
    f("padding", s.padding);
    f("activation", s.activation);
    f("use_bias", s.use_bias);
  }
};
struct Pooling2DSpec {  // MaxPooling2D and AveragePooling2D
  static nlohmann::json keras_constants() { return {{"data_format", "channels_last"}}; }
  Pair pool_size{2, 2};
  Pair strides{2, 2};
  Padding padding = Padding::valid;
  template <class S, class F> static void fields(S& s, F&& f) {
    f("pool_size", s.pool_size, between(1, 1024));
    if constexpr (!std::is_const_v<S>) s.strides = s.pool_size;  // Keras: strides=None means pool_size
    f("strides", s.strides, between(1, 1024));
    f("padding", s.padding);
  }
};
struct MaxPooling2DSpec : Pooling2DSpec {
  static constexpr const char* kType = "MaxPooling2D";
};
struct AveragePooling2DSpec : Pooling2DSpec {
  static constexpr const char* kType = "AveragePooling2D";
};
struct GlobalAveragePooling2DSpec {
  static constexpr const char* kType = "GlobalAveragePooling2D";
  static nlohmann::json keras_constants() { return {{"data_format", "channels_last"}, {"keepdims", false}}; }
  template <class S, class F> static void fields(S&, F&&) {}
};
struct DropoutSpec {
  static constexpr const char* kType = "Dropout";
  double rate = 0;
  template <class S, class F> static void fields(S& s, F&& f) { f("rate", s.rate, fraction().needed()); }
};
struct BatchNormalizationSpec {  // Keras's defaults, not LibTorch's (momentum 0.1 the other way round, eps 1e-5)
  static constexpr const char* kType = "BatchNormalization";
  static nlohmann::json keras_constants() { return {{"axis", -1}, {"renorm", false}, {"synchronized", false}}; }
  double momentum = 0.99, epsilon = 1e-3;
  bool center = true, scale = true;
  template <class S, class F> static void fields(S& s, F&& f) {
    f("momentum", s.momentum, fraction());
    f("epsilon", s.epsilon, Rule{0, 1, /*lo_open=*/true, /*hi_open=*/true});
    f("center", s.center);
    f("scale", s.scale);
  }
};
struct ActivationSpec {
  static constexpr const char* kType = "Activation";
  Activation activation = Activation::linear;
  template <class S, class F> static void fields(S& s, F&& f) { f("activation", s.activation, needed()); }
};
using LayerParams = std::variant<FlattenSpec, ReshapeSpec, DenseSpec, Conv2DSpec, MaxPooling2DSpec, AveragePooling2DSpec,
                                 GlobalAveragePooling2DSpec, DropoutSpec, BatchNormalizationSpec, ActivationSpec>;

struct LayerSpec {
  std::string name;  // Keras-style auto name ("dense", "dense_1") unless the config gives one
  LayerParams params;
  std::string type() const {  // Keras's class name: "Flatten", "Dense", "Conv2D", ...
    return std::visit([](const auto& p) { return std::string(std::decay_t<decltype(p)>::kType); }, params);
  }
};
// The layer type of that Keras class name, with its defaults; false when there is none.
bool layer_of_type(const std::string& type, LayerParams& out);
std::vector<std::string> layer_types();  // every Keras class name above, in LayerParams's order

struct ModelConfig {
  std::vector<LayerSpec> layers;
  template <class S, class F> static void fields(S& s, F&& f) { f("layers", s.layers, needed()); }
};

// ---- training ------------------------------------------------------------------------------------
enum class Optimizer { adam, adamw, sgd, rmsprop };
struct OptimizerName {
  Optimizer value;
  const char* name;         // in a config
  const char* keras_class;  // keras.optimizers.<class>
};
inline constexpr OptimizerName kOptimizers[] = {{Optimizer::adam, "adam", "Adam"},
                                                {Optimizer::adamw, "adamw", "AdamW"},
                                                {Optimizer::sgd, "sgd", "SGD"},
                                                {Optimizer::rmsprop, "rmsprop", "RMSprop"}};
inline const auto& names_of(Optimizer) { return kOptimizers; }

// Keras defaults per optimizer (keras.optimizers.Adam / AdamW / SGD / RMSprop); only the keys of
// the chosen optimizer are accepted in the config.
struct OptimizerConfig {
  Optimizer name = Optimizer::adam;
  double learning_rate = 0.001;          // sgd: 0.01 (keras_defaults)
  double beta_1 = 0.9, beta_2 = 0.999;   // adam, adamw
  double epsilon = 1e-7;                 // adam, adamw, rmsprop
  double weight_decay = 0.004;           // adamw
  double rho = 0.9;                      // rmsprop
  double momentum = 0.0;                 // sgd, rmsprop
  bool nesterov = false;                 // sgd
  bool centered = false;                 // rmsprop
  static OptimizerConfig keras_defaults(Optimizer name) {
    OptimizerConfig o;
    o.name = name;
    if (name == Optimizer::sgd) o.learning_rate = 0.01;
    return o;
  }
  template <class S, class F> static void fields(S& o, F&& f) {
    const bool adam = o.name == Optimizer::adam || o.name == Optimizer::adamw;
    f("name", o.name);
    f("learning_rate", o.learning_rate, above(0));
    if (adam) f("beta_1", o.beta_1, fraction()), f("beta_2", o.beta_2, fraction());
    if (o.name == Optimizer::rmsprop) f("rho", o.rho, fraction());
    if (o.name == Optimizer::sgd || o.name == Optimizer::rmsprop) f("momentum", o.momentum, fraction());
    if (o.name != Optimizer::sgd) f("epsilon", o.epsilon, above(0));
    if (o.name == Optimizer::adamw) f("weight_decay", o.weight_decay, fraction());
    if (o.name == Optimizer::sgd) f("nesterov", o.nesterov);
    if (o.name == Optimizer::rmsprop) f("centered", o.centered);
  }
};

enum class Loss { sparse_categorical_crossentropy };
inline constexpr Named<Loss> kLosses[] = {{Loss::sparse_categorical_crossentropy, "sparse_categorical_crossentropy"}};
inline const auto& names_of(Loss) { return kLosses; }
enum class LossSemantics { tensorflow, renormalized };
inline constexpr Named<LossSemantics> kLossSemantics[] = {{LossSemantics::tensorflow, "tensorflow"},
                                                          {LossSemantics::renormalized, "renormalized"}};
inline const auto& names_of(LossSemantics) { return kLossSemantics; }

struct LossConfig {
  Loss name = Loss::sparse_categorical_crossentropy;
  LossSemantics semantics = LossSemantics::tensorflow;
  bool from_logits = false;
  double label_smoothing = 0;  // as keras.losses.CategoricalCrossentropy's: y = y (1 - ls) + ls / classes
  template <class S, class F> static void fields(S& l, F&& f) {
    f("name", l.name);
    f("semantics", l.semantics);
    f("from_logits", l.from_logits);
    f("label_smoothing", l.label_smoothing, fraction());
  }
};

// keras.optimizers.schedules, stepped once per optimizer step; the initial rate is the optimizer's
// learning_rate. exponential_decay: lr * decay_rate^(step / decay_steps) (floored when staircase).
// cosine_decay: linear warm-up from lr to warmup_target over warmup_steps (when warmup_target > 0),
// then a cosine from there down to alpha times it over decay_steps (0: the rest of training).
enum class Schedule { constant, exponential_decay, cosine_decay };
inline constexpr Named<Schedule> kSchedules[] = {
    {Schedule::constant, "constant"}, {Schedule::exponential_decay, "exponential_decay"}, {Schedule::cosine_decay, "cosine_decay"}};
inline const auto& names_of(Schedule) { return kSchedules; }

struct ScheduleConfig {
  Schedule name = Schedule::constant;
  int64_t decay_steps = 0;
  double decay_rate = 0.96;
  bool staircase = false;
  double alpha = 0;
  int64_t warmup_steps = 0;
  double warmup_target = 0;
  // keras.optimizers.schedules.ExponentialDecay has no defaults for decay_steps and decay_rate: a
  // config must give them. These are what `--set training.lr_schedule.name=exponential_decay` starts from.
  static ScheduleConfig keras_defaults(Schedule name) {
    ScheduleConfig s;
    s.name = name;
    if (name == Schedule::exponential_decay) s.decay_steps = 1000;
    return s;
  }
  template <class S, class F> static void fields(S& s, F&& f) {
    constexpr double kMaxSteps = double(int64_t{1} << 40);
    f("name", s.name);
    if (s.name == Schedule::exponential_decay) {
      f("decay_steps", s.decay_steps, between(1, kMaxSteps).needed());
      f("decay_rate", s.decay_rate, Rule{0, 1, /*lo_open=*/true}.needed());
      f("staircase", s.staircase);
    }
    if (s.name == Schedule::cosine_decay) {
      f("decay_steps", s.decay_steps, between(0, kMaxSteps).because(" (0: the rest of training)"));
      f("alpha", s.alpha, between(0, 1));
      f("warmup_steps", s.warmup_steps, between(0, kMaxSteps));
      f("warmup_target", s.warmup_target, at_least(0).because(" (0: no warm-up)"));
    }
  }
};

// keras.callbacks.ReduceLROnPlateau and EarlyStopping, with their defaults. val_* monitors need a
// validation_split: selecting on the test set would make the test figure dishonest.
enum class Monitor { val_loss, val_accuracy, loss, accuracy };
inline constexpr Named<Monitor> kMonitors[] = {
    {Monitor::val_loss, "val_loss"}, {Monitor::val_accuracy, "val_accuracy"}, {Monitor::loss, "loss"}, {Monitor::accuracy, "accuracy"}};
inline const auto& names_of(Monitor) { return kMonitors; }

struct ReduceLROnPlateauConfig {
  bool enabled = false;
  Monitor monitor = Monitor::val_loss;
  double factor = 0.1;
  int64_t patience = 10;
  double min_delta = 1e-4;
  int64_t cooldown = 0;
  double min_lr = 0;
  template <class S, class F> static void fields(S& p, F&& f) {
    if constexpr (!std::is_const_v<S>) p.enabled = true;  // a config that has the section turns it on
    f("enabled", p.enabled);
    f("monitor", p.monitor);
    f("factor", p.factor, Rule{0, 1, /*lo_open=*/true, /*hi_open=*/true});
    f("patience", p.patience, at_least(0));
    f("min_delta", p.min_delta, at_least(0));
    f("cooldown", p.cooldown, at_least(0));
    f("min_lr", p.min_lr, at_least(0));
  }
};
struct EarlyStoppingConfig {
  bool enabled = false;
  Monitor monitor = Monitor::val_loss;
  double min_delta = 0;
  int64_t patience = 0;
  bool restore_best_weights = false;
  int64_t start_from_epoch = 0;
  template <class S, class F> static void fields(S& e, F&& f) {
    if constexpr (!std::is_const_v<S>) e.enabled = true;  // a config that has the section turns it on
    f("enabled", e.enabled);
    f("monitor", e.monitor);
    f("min_delta", e.min_delta, at_least(0));
    f("patience", e.patience, at_least(0));
    f("restore_best_weights", e.restore_best_weights);
    f("start_from_epoch", e.start_from_epoch, at_least(0));
  }
};

// keras.callbacks.TensorBoard, writing under the run directory's tensorboard/: train/ and
// validation/ as Keras names its runs (epoch_loss, epoch_accuracy, epoch_learning_rate,
// batch_loss, weight histograms), test/ for the per-epoch test set, and the config, hyper-parameters
// and figures. On unless turned off; histograms every epoch (Keras's default histogram_freq is 0).
struct TensorBoardConfig {
  bool enabled = true;
  int64_t update_freq = 100;   // batches between batch_loss points (0: epochs only, Keras's "epoch")
  int64_t histogram_freq = 1;  // epochs between weight histograms (0: none)
  template <class S, class F> static void fields(S& t, F&& f) {
    f("enabled", t.enabled);
    f("update_freq", t.update_freq, at_least(0));
    f("histogram_freq", t.histogram_freq, at_least(0));
  }
};

// Random affine (and optionally elastic) distortions of each training batch, on the training
// device, named as keras.preprocessing.image.ImageDataGenerator names them. Shifts below 1 are
// fractions of the image size, from 1 up pixels (ImageDataGenerator's rule). All zero: off.
enum class FillMode { nearest, constant };  // constant: 0
inline constexpr Named<FillMode> kFillModes[] = {{FillMode::nearest, "nearest"}, {FillMode::constant, "constant"}};
inline const auto& names_of(FillMode) { return kFillModes; }

struct AugmentationConfig {
  double rotation_range = 0;      // degrees, uniform in [-r, r]
  double width_shift_range = 0;   // uniform in [-s, s]
  double height_shift_range = 0;
  double zoom_range = 0;          // scale uniform in [1 - z, 1 + z]
  FillMode fill_mode = FillMode::nearest;
  double elastic_alpha = 0;       // Simard et al. 2003 elastic distortion: displacement scale in pixels
  double elastic_sigma = 4;       // Gaussian smoothing of the displacement field, pixels
  bool enabled() const {
    return rotation_range > 0 || width_shift_range > 0 || height_shift_range > 0 || zoom_range > 0 || elastic_alpha > 0;
  }
  template <class S, class F> static void fields(S& a, F&& f) {
    f("rotation_range", a.rotation_range, between(0, 180));
    f("width_shift_range", a.width_shift_range, between(0, 28));
    f("height_shift_range", a.height_shift_range, between(0, 28));
    f("zoom_range", a.zoom_range, between(0, 0.9));
    f("fill_mode", a.fill_mode);
    f("elastic_alpha", a.elastic_alpha, between(0, 100));
    f("elastic_sigma", a.elastic_sigma, between(0.5, 10));
  }
};

// What Keras's "accuracy" takes the argmax of. Keras 3.9 and later (and every eager or JAX run):
// the model's outputs, so saturated sigmoids that tie at 1.0 count for the lowest of the tied
// classes. Keras 3.8 and earlier on TensorFlow in graph mode (model.fit's default, and what the
// paper ran): the logits, because TensorFlow's graph optimizer rewrites ArgMax(Sigmoid(z)) to
// ArgMax(z); ties then go to the larger logit. Only the reported accuracy differs, never the training.
enum class AccuracyArgmax { outputs, logits };
inline constexpr Named<AccuracyArgmax> kAccuracyArgmaxes[] = {{AccuracyArgmax::outputs, "outputs"}, {AccuracyArgmax::logits, "logits"}};
inline const auto& names_of(AccuracyArgmax) { return kAccuracyArgmaxes; }

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
  TensorBoardConfig tensorboard;
  AugmentationConfig augmentation;
  AccuracyArgmax accuracy_argmax = AccuracyArgmax::outputs;
  // Not a Keras knob: train Flatten/Dense models on the CPU with the fused step (fused.h), which
  // computes what the autograd step does several times faster; false: always the autograd step.
  bool fused = true;
  // Not a Keras knob: on CUDA, replay each epoch after the first as one CUDA graph (graph.h);
  // false: the eager loop, one host launch per kernel.
  bool cuda_graph = true;
  template <class S, class F> static void fields(S& t, F&& f) {
    f("epochs", t.epochs, between(1, 100000));
    f("batch_size", t.batch_size, between(1, 60000).because(" (the training set; one batch holds at most all of it)"));
    f("shuffle", t.shuffle);
    f("validation_split", t.validation_split, fraction());
    f("seed", t.seed);
    f("optimizer", t.optimizer);
    f("loss", t.loss);
    f("lr_schedule", t.lr_schedule);
    f("reduce_lr_on_plateau", t.reduce_lr_on_plateau);
    f("early_stopping", t.early_stopping);
    f("tensorboard", t.tensorboard);
    f("augmentation", t.augmentation);
    f("accuracy_argmax", t.accuracy_argmax);
    f("fused", t.fused);
    f("cuda_graph", t.cuda_graph);
  }
};

struct Config {
  std::string name = "run";  // names the run directory
  Dataset dataset = Dataset::mnist;
  ModelConfig model;
  TrainingConfig training;
  template <class S, class F> static void fields(S& c, F&& f) {
    f("name", c.name);
    f("dataset", c.dataset);
    f("model", c.model, needed());
    f("training", c.training);
  }
};

// Parse and validate. `origin` names the source in errors (a file path). `sets` are --set changes
// ("a.b=value", as apply_overrides takes them) made before the file's values are checked, so they
// can repair one (epochs 0 with --epochs 3). Throws ConfigError/UsageError.
Config parse_config(const nlohmann::json& j);
Config load_config_file(const std::string& path, const std::vector<std::string>& sets = {});
Config parse_config_text(const std::string& text, const std::string& origin, const std::vector<std::string>& sets = {});

// The fully resolved config (every default written out): what a run directory stores. A layer
// or an optimizer alone as it shows there.
nlohmann::json to_json(const Config& c);
nlohmann::json to_json(const LayerSpec& layer);
nlohmann::json to_json(const OptimizerConfig& optimizer);

// The keys a struct's fields() lists for its current values (an optimizer's depend on its name).
template <class S>
std::vector<std::string> field_keys(const S& s) {
  std::vector<std::string> keys;
  S::fields(s, [&](const char* key, const auto&, Rule = {}) { keys.emplace_back(key); });
  return keys;
}

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
std::vector<std::string> class_names(Dataset dataset);

}  // namespace mnist
