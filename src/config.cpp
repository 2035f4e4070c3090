// config: JSON -> typed, validated Config, and the --set overrides. Every error names its JSON path.
#include "config.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "errors.h"
#include "user_input.h"

namespace mnist {
namespace {

using nlohmann::json;

// A config is at most five levels deep (model.layers[i].kernel_size[0]); anything far deeper is not one.
constexpr int kMaxConfigDepth = 32;
constexpr int64_t kMaxConfigBytes = int64_t{1} << 20;  // a config is a few KB

// Values as a user wrote them (-1, not -1.0), cut short when long.
std::string show(const json& v) { return show_json(v); }

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Reads one JSON object, remembers which keys were used, and rejects the rest: a typo such as
// "learning_rte" must fail loudly rather than silently train with the default.
class ObjectReader {
 public:
  ObjectReader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) throw ConfigError(label(), "must be a JSON object (got " + show(j_) + ")");
  }

  bool has(const std::string& key) const { return j_.contains(key); }
  std::string path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  const json& raw(const std::string& key) {
    used_.insert(key);
    return j_.at(key);
  }

  double number(const std::string& key, double fallback) {
    if (!has(key)) return fallback;
    const json& v = raw(key);
    if (!v.is_number()) throw ConfigError(path(key), "must be a number (got " + show(v) + ")");
    return v.get<double>();
  }

  int64_t integer(const std::string& key, int64_t fallback) {
    if (!has(key)) return fallback;
    const json& v = raw(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() && std::fabs(v.get<double>()) < 9e15)
      return static_cast<int64_t>(v.get<double>());
    throw ConfigError(path(key), "must be an integer (got " + show(v) + ")");
  }

  bool boolean(const std::string& key, bool fallback) {
    if (!has(key)) return fallback;
    const json& v = raw(key);
    if (!v.is_boolean()) throw ConfigError(path(key), "must be true or false (got " + show(v) + ")");
    return v.get<bool>();
  }

  std::string string(const std::string& key, const std::string& fallback) {
    if (!has(key)) return fallback;
    const json& v = raw(key);
    if (!v.is_string()) throw ConfigError(path(key), "must be a string (got " + show(v) + ")");
    return v.get<std::string>();
  }

  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& allowed) {
    std::string v = string(key, fallback);
    for (const auto& a : allowed)
      if (v == a) return v;
    throw ConfigError(path(key), "must be one of " + join(allowed) + " (got \"" + v + "\")");
  }

  // Call after reading: any key nobody asked for is an error.
  void reject_unknown(const std::vector<std::string>& known) const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!used_.count(it.key()))
        throw ConfigError(path(it.key()), "unknown key (known here: " + join(known) + ")");
  }

 private:
  std::string label() const { return path_.empty() ? "(top level)" : path_; }
  const json& j_;
  std::string path_;
  std::set<std::string> used_;
};

void require(bool ok, const std::string& path, const std::string& rule, const json& got) {
  if (!ok) throw ConfigError(path, rule + " (got " + show(got) + ")");
}

Activation activation(ObjectReader& r) {
  std::vector<std::string> names;
  for (const auto& a : kActivations) names.emplace_back(a.name);
  const std::string name = r.choice("activation", "linear", names);
  for (const auto& a : kActivations)
    if (name == a.name) return a.activation;
  return Activation::linear;
}

// Keras names layers by their snake_case class name, numbering repeats: dense, dense_1, dense_2.
std::string auto_name(const std::string& type, std::map<std::string, int>& seen) {
  std::string base;
  for (size_t i = 0; i < type.size(); ++i) {
    char c = type[i];
    if (std::isupper(static_cast<unsigned char>(c))) {
      if (i > 0 && !std::isdigit(static_cast<unsigned char>(type[i - 1]))) base += '_';
      base += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      base += c;
    }
  }
  int n = seen[base]++;
  return n == 0 ? base : base + "_" + std::to_string(n);
}

const std::vector<std::string> kLayerTypes = {"Flatten",          "Reshape",          "Dense",
                                               "Conv2D",           "MaxPooling2D",     "AveragePooling2D",
                                               "GlobalAveragePooling2D", "Dropout", "BatchNormalization",
                                               "Activation"};

// Keras accepts an int or a pair for kernel_size, strides and pool_size.
Pair pair(ObjectReader& r, const std::string& key, Pair fallback) {
  if (!r.has(key)) return fallback;
  const json& v = r.raw(key);
  Pair out{};
  if (v.is_number_integer()) {
    out = {v.get<int64_t>(), v.get<int64_t>()};
  } else if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer()) {
    out = {v[0].get<int64_t>(), v[1].get<int64_t>()};
  } else {
    throw ConfigError(r.path(key), "must be an integer or a list of two integers [height, width] (got " + show(v) + ")");
  }
  require(out[0] >= 1 && out[1] >= 1 && out[0] <= 1024 && out[1] <= 1024, r.path(key), "must be between 1 and 1024", v);
  return out;
}

Padding padding(ObjectReader& r) { return r.choice("padding", "valid", {"valid", "same"}) == "same" ? Padding::same : Padding::valid; }

LayerSpec parse_layer(const json& j, const std::string& path, std::map<std::string, int>& names) {
  ObjectReader r(j, path);
  if (!r.has("type")) throw ConfigError(path + ".type", "missing: every layer needs a \"type\" (" + join(kLayerTypes) + ")");
  LayerSpec layer;
  layer.type = r.choice("type", "", kLayerTypes);
  layer.name = r.string("name", auto_name(layer.type, names));
  require(!layer.name.empty() && layer.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == std::string::npos &&
              !std::isdigit(static_cast<unsigned char>(layer.name[0])),
          r.path("name"), "must be letters, digits and _ (an identifier: it names the layer in exported models)", layer.name);
  // The name becomes `self.<name>` in the exported TorchScript: Python's keywords cannot be that, and
  // a TorchScript module already has `forward` and `training`; `torch` names the library there.
  static const std::set<std::string> kReserved = {
      "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
      "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or",
      "pass", "raise", "return", "try", "while", "with", "yield", "forward", "training", "torch"};
  require(!kReserved.count(layer.name), r.path("name"),
          "is reserved in the exported TorchScript (a Python keyword, forward, training or torch): choose another name", layer.name);
  auto needed = [&](const std::string& key) {
    if (!r.has(key)) throw ConfigError(r.path(key), "missing: a " + layer.type + " layer needs \"" + key + "\"");
  };
  std::vector<std::string> keys = {"type", "name"};
  const std::string& t = layer.type;
  if (t == "Flatten" || t == "GlobalAveragePooling2D") {
    if (t == "Flatten") layer.params = FlattenSpec{};
    else layer.params = GlobalAveragePooling2DSpec{};
  } else if (t == "Reshape") {
    needed("target_shape");
    const json& v = r.raw("target_shape");
    ReshapeSpec spec;
    const bool ok = v.is_array() && (v.size() == 1 || v.size() == 3);
    int unknown = 0;
    for (size_t i = 0; ok && i < v.size(); ++i) {
      require(v[i].is_number_integer() && (v[i].get<int64_t>() >= 1 || v[i].get<int64_t>() == -1), r.path("target_shape"),
              "entries must be positive integers or one -1", v);
      spec.target_shape.push_back(v[i].get<int64_t>());
      unknown += spec.target_shape.back() == -1;
    }
    require(ok && unknown <= 1, r.path("target_shape"),
            "must be [features] or [height, width, channels] (Keras order), with at most one -1", v);
    layer.params = spec;
    keys.push_back("target_shape");
  } else if (t == "Dense") {
    DenseSpec d;
    needed("units");
    d.units = r.integer("units", 0);
    require(d.units >= 1 && d.units <= (1 << 20), r.path("units"), "must be between 1 and 1048576", d.units);
    d.activation = activation(r);
    d.use_bias = r.boolean("use_bias", true);
    layer.params = d;
    keys.insert(keys.end(), {"units", "activation", "use_bias"});
  } else if (t == "Conv2D") {
    Conv2DSpec c;
    needed("filters");
    needed("kernel_size");
    c.filters = r.integer("filters", 0);
    require(c.filters >= 1 && c.filters <= 65536, r.path("filters"), "must be between 1 and 65536", c.filters);
    c.kernel_size = pair(r, "kernel_size", c.kernel_size);
    c.strides = pair(r, "strides", c.strides);
    c.padding = padding(r);
    c.activation = activation(r);
    c.use_bias = r.boolean("use_bias", true);
    layer.params = c;
    keys.insert(keys.end(), {"filters", "kernel_size", "strides", "padding", "activation", "use_bias"});
  } else if (t == "MaxPooling2D" || t == "AveragePooling2D") {
    Pooling2DSpec p;
    p.max = t == "MaxPooling2D";
    p.pool_size = pair(r, "pool_size", p.pool_size);
    const bool default_strides = !r.has("strides") || r.raw("strides").is_null();
    p.strides = default_strides ? p.pool_size : pair(r, "strides", p.pool_size);
    p.padding = padding(r);
    layer.params = p;
    keys.insert(keys.end(), {"pool_size", "strides", "padding"});
  } else if (t == "Dropout") {
    DropoutSpec d;
    needed("rate");
    d.rate = r.number("rate", 0);
    require(d.rate >= 0 && d.rate < 1, r.path("rate"), "must be in [0, 1)", d.rate);
    layer.params = d;
    keys.push_back("rate");
  } else if (t == "BatchNormalization") {
    BatchNormalizationSpec b;
    b.momentum = r.number("momentum", b.momentum);
    require(b.momentum >= 0 && b.momentum < 1, r.path("momentum"), "must be in [0, 1)", b.momentum);
    b.epsilon = r.number("epsilon", b.epsilon);
    require(b.epsilon > 0 && b.epsilon < 1, r.path("epsilon"), "must be in (0, 1)", b.epsilon);
    b.center = r.boolean("center", true);
    b.scale = r.boolean("scale", true);
    layer.params = b;
    keys.insert(keys.end(), {"momentum", "epsilon", "center", "scale"});
  } else {  // Activation
    needed("activation");
    layer.params = ActivationSpec{activation(r)};
    keys.push_back("activation");
  }
  r.reject_unknown(keys);
  return layer;
}

json pair_json(const Pair& p) { return json::array({p[0], p[1]}); }
const char* padding_name(Padding p) { return p == Padding::same ? "same" : "valid"; }

json layer_json(const LayerSpec& l) {
  json j = {{"type", l.type}, {"name", l.name}};
  std::visit(
      [&](const auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, ReshapeSpec>) {
          j["target_shape"] = s.target_shape;
        } else if constexpr (std::is_same_v<T, DenseSpec>) {
          j.update({{"units", s.units}, {"activation", to_string(s.activation)}, {"use_bias", s.use_bias}});
        } else if constexpr (std::is_same_v<T, Conv2DSpec>) {
          j.update({{"filters", s.filters}, {"kernel_size", pair_json(s.kernel_size)}, {"strides", pair_json(s.strides)},
                    {"padding", padding_name(s.padding)}, {"activation", to_string(s.activation)}, {"use_bias", s.use_bias}});
        } else if constexpr (std::is_same_v<T, Pooling2DSpec>) {
          j.update({{"pool_size", pair_json(s.pool_size)}, {"strides", pair_json(s.strides)}, {"padding", padding_name(s.padding)}});
        } else if constexpr (std::is_same_v<T, DropoutSpec>) {
          j["rate"] = s.rate;
        } else if constexpr (std::is_same_v<T, BatchNormalizationSpec>) {
          j.update({{"momentum", s.momentum}, {"epsilon", s.epsilon}, {"center", s.center}, {"scale", s.scale}});
        } else if constexpr (std::is_same_v<T, ActivationSpec>) {
          j["activation"] = to_string(s.activation);
        }
      },
      l.params);
  return j;
}

ModelConfig parse_model(const json& j) {
  ObjectReader r(j, "model");
  ModelConfig m;
  if (!r.has("layers")) throw ConfigError("model.layers", "missing: list the layers, e.g. [{\"type\": \"Flatten\"}, ...]");
  const json& layers = r.raw("layers");
  if (!layers.is_array() || layers.empty())
    throw ConfigError("model.layers", "must be a non-empty list of layers (got " + show(layers) + ")");
  std::map<std::string, int> names;
  for (size_t i = 0; i < layers.size(); ++i)
    m.layers.push_back(parse_layer(layers[i], "model.layers[" + std::to_string(i) + "]", names));
  std::set<std::string> unique;
  for (size_t i = 0; i < m.layers.size(); ++i)
    if (!unique.insert(m.layers[i].name).second)
      throw ConfigError("model.layers[" + std::to_string(i) + "].name", "duplicate layer name \"" + m.layers[i].name + "\"");
  r.reject_unknown({"layers"});
  return m;
}

OptimizerConfig parse_optimizer(const json& j) {
  ObjectReader r(j, "training.optimizer");
  OptimizerConfig o;
  o.name = r.choice("name", "adam", {"adam", "adamw", "sgd", "rmsprop"});
  auto positive = [&](const std::string& key, double fallback) {
    double v = r.number(key, fallback);
    require(v > 0 && std::isfinite(v), r.path(key), "must be > 0", v);
    return v;
  };
  auto unit = [&](const std::string& key, double fallback) {  // [0, 1)
    double v = r.number(key, fallback);
    require(v >= 0 && v < 1, r.path(key), "must be in [0, 1)", v);
    return v;
  };
  if (o.name == "adam") {
    o.learning_rate = positive("learning_rate", 0.001);
    o.beta_1 = unit("beta_1", 0.9);
    o.beta_2 = unit("beta_2", 0.999);
    o.epsilon = positive("epsilon", 1e-7);
    r.reject_unknown({"name", "learning_rate", "beta_1", "beta_2", "epsilon"});
  } else if (o.name == "adamw") {
    o.learning_rate = positive("learning_rate", 0.001);
    o.beta_1 = unit("beta_1", 0.9);
    o.beta_2 = unit("beta_2", 0.999);
    o.epsilon = positive("epsilon", 1e-7);
    o.weight_decay = r.number("weight_decay", 0.004);
    require(o.weight_decay >= 0 && o.weight_decay < 1, r.path("weight_decay"), "must be in [0, 1)", o.weight_decay);
    r.reject_unknown({"name", "learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay"});
  } else if (o.name == "sgd") {
    o.learning_rate = positive("learning_rate", 0.01);
    o.momentum = unit("momentum", 0.0);
    o.nesterov = r.boolean("nesterov", false);
    r.reject_unknown({"name", "learning_rate", "momentum", "nesterov"});
  } else {
    o.learning_rate = positive("learning_rate", 0.001);
    o.rho = unit("rho", 0.9);
    o.momentum = unit("momentum", 0.0);
    o.epsilon = positive("epsilon", 1e-7);
    o.centered = r.boolean("centered", false);
    r.reject_unknown({"name", "learning_rate", "rho", "momentum", "epsilon", "centered"});
  }
  return o;
}

LossConfig parse_loss(const json& j) {
  ObjectReader r(j, "training.loss");
  LossConfig l;
  l.name = r.choice("name", l.name, {"sparse_categorical_crossentropy"});
  l.semantics = r.choice("semantics", "tensorflow", {"tensorflow", "renormalized"}) == "tensorflow"
                    ? LossSemantics::tensorflow
                    : LossSemantics::renormalized;
  l.from_logits = r.boolean("from_logits", false);
  l.label_smoothing = r.number("label_smoothing", 0);
  require(l.label_smoothing >= 0 && l.label_smoothing < 1, r.path("label_smoothing"), "must be in [0, 1)", l.label_smoothing);
  r.reject_unknown({"name", "semantics", "from_logits", "label_smoothing"});
  return l;
}

const std::vector<std::string> kMonitors = {"val_loss", "val_accuracy", "loss", "accuracy"};

ScheduleConfig parse_schedule(const json& j) {
  ObjectReader r(j, "training.lr_schedule");
  ScheduleConfig s;
  s.name = r.choice("name", "constant", {"constant", "exponential_decay", "cosine_decay"});
  auto count = [&](const std::string& key, int64_t fallback) {
    int64_t v = r.integer(key, fallback);
    require(v >= 0 && v <= (int64_t{1} << 40), r.path(key), "must be >= 0", v);
    return v;
  };
  if (s.name == "exponential_decay") {
    if (!r.has("decay_steps") || !r.has("decay_rate"))
      throw ConfigError(r.path(r.has("decay_steps") ? "decay_rate" : "decay_steps"),
                        "missing: exponential_decay needs decay_steps and decay_rate (keras.optimizers.schedules.ExponentialDecay)");
    s.decay_steps = count("decay_steps", 0);
    require(s.decay_steps >= 1, r.path("decay_steps"), "must be >= 1", s.decay_steps);
    s.decay_rate = r.number("decay_rate", s.decay_rate);
    require(s.decay_rate > 0 && s.decay_rate <= 1, r.path("decay_rate"), "must be in (0, 1]", s.decay_rate);
    s.staircase = r.boolean("staircase", false);
    r.reject_unknown({"name", "decay_steps", "decay_rate", "staircase"});
  } else if (s.name == "cosine_decay") {
    s.decay_steps = count("decay_steps", 0);
    s.alpha = r.number("alpha", 0);
    require(s.alpha >= 0 && s.alpha <= 1, r.path("alpha"), "must be in [0, 1]", s.alpha);
    s.warmup_steps = count("warmup_steps", 0);
    s.warmup_target = r.number("warmup_target", 0);
    require(s.warmup_target >= 0 && std::isfinite(s.warmup_target), r.path("warmup_target"), "must be >= 0 (0: no warm-up)",
            s.warmup_target);
    r.reject_unknown({"name", "decay_steps", "alpha", "warmup_steps", "warmup_target"});
  } else {
    r.reject_unknown({"name"});
  }
  return s;
}

double non_negative(ObjectReader& r, const std::string& key, double fallback) {
  const double v = r.number(key, fallback);
  require(v >= 0, r.path(key), "must be >= 0", v);
  return v;
}

int64_t non_negative_count(ObjectReader& r, const std::string& key, int64_t fallback) {
  const int64_t v = r.integer(key, fallback);
  require(v >= 0, r.path(key), "must be >= 0", v);
  return v;
}

ReduceLROnPlateauConfig parse_plateau(const json& j) {
  ObjectReader r(j, "training.reduce_lr_on_plateau");
  ReduceLROnPlateauConfig p;
  p.enabled = r.boolean("enabled", true);
  p.monitor = r.choice("monitor", p.monitor, kMonitors);
  p.factor = r.number("factor", p.factor);
  require(p.factor > 0 && p.factor < 1, r.path("factor"), "must be in (0, 1)", p.factor);
  p.patience = non_negative_count(r, "patience", p.patience);
  p.min_delta = non_negative(r, "min_delta", p.min_delta);
  p.cooldown = non_negative_count(r, "cooldown", p.cooldown);
  p.min_lr = non_negative(r, "min_lr", p.min_lr);
  r.reject_unknown({"enabled", "monitor", "factor", "patience", "min_delta", "cooldown", "min_lr"});
  return p;
}

EarlyStoppingConfig parse_early_stopping(const json& j) {
  ObjectReader r(j, "training.early_stopping");
  EarlyStoppingConfig e;
  e.enabled = r.boolean("enabled", true);
  e.monitor = r.choice("monitor", e.monitor, kMonitors);
  e.min_delta = non_negative(r, "min_delta", e.min_delta);
  e.patience = non_negative_count(r, "patience", e.patience);
  e.restore_best_weights = r.boolean("restore_best_weights", false);
  e.start_from_epoch = non_negative_count(r, "start_from_epoch", 0);
  r.reject_unknown({"enabled", "monitor", "min_delta", "patience", "restore_best_weights", "start_from_epoch"});
  return e;
}

AugmentationConfig parse_augmentation(const json& j) {
  ObjectReader r(j, "training.augmentation");
  AugmentationConfig a;
  auto range = [&](const std::string& key, double fallback, double max) {
    double v = r.number(key, fallback);
    require(v >= 0 && v <= max, r.path(key), "must be between 0 and " + show(json(max)), v);
    return v;
  };
  a.rotation_range = range("rotation_range", 0, 180);
  a.width_shift_range = range("width_shift_range", 0, 28);
  a.height_shift_range = range("height_shift_range", 0, 28);
  a.zoom_range = range("zoom_range", 0, 0.9);
  a.fill_mode = r.choice("fill_mode", "nearest", {"nearest", "constant"});
  a.elastic_alpha = range("elastic_alpha", 0, 100);
  a.elastic_sigma = r.number("elastic_sigma", a.elastic_sigma);
  require(a.elastic_sigma >= 0.5 && a.elastic_sigma <= 10, r.path("elastic_sigma"), "must be between 0.5 and 10", a.elastic_sigma);
  r.reject_unknown({"rotation_range", "width_shift_range", "height_shift_range", "zoom_range", "fill_mode", "elastic_alpha",
                    "elastic_sigma"});
  return a;
}

TrainingConfig parse_training(const json& j) {
  ObjectReader r(j, "training");
  TrainingConfig t;
  t.epochs = r.integer("epochs", t.epochs);
  require(t.epochs >= 1 && t.epochs <= 100000, r.path("epochs"), "must be between 1 and 100000", t.epochs);
  t.batch_size = r.integer("batch_size", t.batch_size);
  require(t.batch_size >= 1 && t.batch_size <= 60000, r.path("batch_size"), "must be between 1 and 60000 (the training set; one batch holds at most all of it)", t.batch_size);
  t.shuffle = r.boolean("shuffle", t.shuffle);
  t.validation_split = r.number("validation_split", t.validation_split);
  require(t.validation_split >= 0 && t.validation_split < 1, r.path("validation_split"), "must be in [0, 1)",
          t.validation_split);
  int64_t seed = r.integer("seed", 0);
  require(seed >= 0, r.path("seed"), "must be >= 0", seed);
  t.seed = static_cast<uint64_t>(seed);
  if (r.has("optimizer")) t.optimizer = parse_optimizer(r.raw("optimizer"));
  if (r.has("loss")) t.loss = parse_loss(r.raw("loss"));
  if (r.has("lr_schedule")) t.lr_schedule = parse_schedule(r.raw("lr_schedule"));
  if (r.has("reduce_lr_on_plateau")) t.reduce_lr_on_plateau = parse_plateau(r.raw("reduce_lr_on_plateau"));
  if (r.has("early_stopping")) t.early_stopping = parse_early_stopping(r.raw("early_stopping"));
  if (r.has("augmentation")) t.augmentation = parse_augmentation(r.raw("augmentation"));
  t.accuracy_argmax = r.choice("accuracy_argmax", "outputs", {"outputs", "logits"}) == "logits" ? AccuracyArgmax::logits
                                                                                               : AccuracyArgmax::outputs;
  t.fused = r.boolean("fused", t.fused);
  t.cuda_graph = r.boolean("cuda_graph", t.cuda_graph);
  r.reject_unknown({"epochs", "batch_size", "shuffle", "validation_split", "seed", "optimizer", "loss", "lr_schedule",
                    "reduce_lr_on_plateau", "early_stopping", "augmentation", "accuracy_argmax", "fused", "cuda_graph"});
  return t;
}

// Cross-field rules: the output layer must fit the dataset and the loss; callbacks must not select
// on the test set; Keras cannot reduce a scheduled learning rate either.
void check_consistency(const Config& c) {
  const TrainingConfig& t = c.training;
  auto needs_validation = [&](bool enabled, const std::string& monitor, const std::string& path) {
    if (enabled && monitor.rfind("val_", 0) == 0 && t.validation_split == 0)
      throw ConfigError(path, "monitors " + monitor + " but training.validation_split is 0, so val_* would be the test set " +
                                  "and the test figure would no longer be honest: set validation_split (e.g. 0.1) or monitor loss");
  };
  needs_validation(t.early_stopping.enabled, t.early_stopping.monitor, "training.early_stopping.monitor");
  needs_validation(t.reduce_lr_on_plateau.enabled, t.reduce_lr_on_plateau.monitor, "training.reduce_lr_on_plateau.monitor");
  if (t.reduce_lr_on_plateau.enabled && t.lr_schedule.name != "constant")
    throw ConfigError("training.reduce_lr_on_plateau",
                      "cannot be combined with training.lr_schedule " + t.lr_schedule.name + " (Keras cannot set a scheduled rate either)");
  const LayerSpec& last = c.model.layers.back();
  const std::string path = "model.layers[" + std::to_string(c.model.layers.size() - 1) + "]";
  const auto* dense = std::get_if<DenseSpec>(&last.params);
  if (!dense) throw ConfigError(path, "the last layer must be a Dense layer with one unit per class");
  const int64_t classes = static_cast<int64_t>(class_names(c.dataset).size());
  if (dense->units != classes)
    throw ConfigError(path + ".units", "the output layer needs " + std::to_string(classes) + " units, one per " +
                                           c.dataset + " class (got " + std::to_string(dense->units) + ")");
  const bool probabilities = dense->activation == Activation::sigmoid || dense->activation == Activation::softmax;
  if (!c.training.loss.from_logits && !probabilities)
    throw ConfigError("training.loss.from_logits",
                      "the output activation is " + to_string(dense->activation) +
                          ", so the model emits logits: set from_logits to true (or use a sigmoid/softmax output)");
}

json optimizer_json(const OptimizerConfig& o) {
  if (o.name == "adam")
    return {{"name", o.name}, {"learning_rate", o.learning_rate}, {"beta_1", o.beta_1}, {"beta_2", o.beta_2},
            {"epsilon", o.epsilon}};
  if (o.name == "adamw")
    return {{"name", o.name},       {"learning_rate", o.learning_rate}, {"beta_1", o.beta_1},
            {"beta_2", o.beta_2},   {"epsilon", o.epsilon},             {"weight_decay", o.weight_decay}};
  if (o.name == "sgd")
    return {{"name", o.name}, {"learning_rate", o.learning_rate}, {"momentum", o.momentum}, {"nesterov", o.nesterov}};
  return {{"name", o.name},         {"learning_rate", o.learning_rate}, {"rho", o.rho},
          {"momentum", o.momentum}, {"epsilon", o.epsilon},             {"centered", o.centered}};
}

// Split "model.layers[1].units" or "model.layers.1.units" into keys.
std::vector<std::string> split_path(const std::string& path) {
  std::string p;
  for (char ch : path) p += (ch == '[' || ch == ']') ? '.' : ch;
  std::vector<std::string> keys;
  std::stringstream ss(p);
  for (std::string k; std::getline(ss, k, '.');)
    if (!k.empty()) keys.push_back(k);
  return keys;
}

bool is_index(const std::string& k) { return !k.empty() && k.size() < 9 && k.find_first_not_of("0123456789") == std::string::npos; }

json* find_path(json& root, const std::vector<std::string>& keys, std::string& missing) {
  json* node = &root;
  std::string walked;
  for (const auto& k : keys) {
    if (node->is_object() && node->contains(k)) {
      node = &(*node)[k];
    } else if (node->is_array() && is_index(k) && std::stoul(k) < node->size()) {
      node = &(*node)[std::stoul(k)];
    } else {
      std::vector<std::string> have;
      if (node->is_object())
        for (auto it = node->begin(); it != node->end(); ++it) have.push_back(it.key());
      if (node->is_array()) have.push_back("indices 0.." + std::to_string(node->size() - 1));
      missing = "no key \"" + k + "\" under " + (walked.empty() ? "the top level" : walked) +
                (have.empty() ? "" : " (it has: " + join(have) + ")");
      return nullptr;
    }
    walked += (walked.empty() ? "" : ".") + k;
  }
  return node;
}

}  // namespace

std::vector<std::string> class_names(const std::string& dataset) {
  if (dataset == "fashion-mnist")
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  return {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
}

Config parse_config(const json& j) {
  ObjectReader r(j, "");
  Config c;
  c.name = r.string("name", "run");
  require(!c.name.empty() && c.name.find_first_of("/\\") == std::string::npos && c.name[0] != '.', "name",
          "must be a non-empty name usable in a directory name", c.name);
  c.dataset = r.choice("dataset", "mnist", {"mnist", "fashion-mnist"});
  if (!r.has("model")) throw ConfigError("model", "missing: the config needs a \"model\" with \"layers\"");
  c.model = parse_model(r.raw("model"));
  if (r.has("training")) c.training = parse_training(r.raw("training"));
  r.reject_unknown({"name", "dataset", "model", "training"});
  check_consistency(c);
  return c;
}

Config parse_config_text(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = parse_json(text, kMaxConfigDepth);
  } catch (const JsonTooDeep& e) {
    throw UsageError("config error in " + origin + ": " + e.what() + "; a config is a few levels deep");
  } catch (const json::exception& e) {
    // nlohmann's message starts with "[json.exception.parse_error.101] parse error at line 3, column 5: ..."
    std::string what = e.what();
    auto pos = what.find("] ");
    throw UsageError("config error in " + origin + ": not valid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
  }
  try {
    return parse_config(j);
  } catch (const ConfigError& e) {
    throw e.in("in " + origin);
  }
}

Config load_config_file(const std::string& path) {
  std::string text;
  try {
    text = read_user_file(path, "config file", kMaxConfigBytes);
  } catch (const std::runtime_error& e) {
    throw UsageError(std::string(e.what()) + ": check the --config path");
  }
  return parse_config_text(text, path);
}

json to_json(const Config& c) {
  json layers = json::array();
  for (const auto& l : c.model.layers) layers.push_back(layer_json(l));
  const auto& t = c.training;
  const auto& s = t.lr_schedule;
  json schedule = {{"name", s.name}};
  if (s.name == "exponential_decay")
    schedule.update({{"decay_steps", s.decay_steps}, {"decay_rate", s.decay_rate}, {"staircase", s.staircase}});
  if (s.name == "cosine_decay")
    schedule.update({{"decay_steps", s.decay_steps}, {"alpha", s.alpha}, {"warmup_steps", s.warmup_steps},
                     {"warmup_target", s.warmup_target}});
  const auto& p = t.reduce_lr_on_plateau;
  const auto& e = t.early_stopping;
  const auto& a = t.augmentation;
  return {{"name", c.name},
          {"dataset", c.dataset},
          {"model", {{"layers", layers}}},
          {"training",
           {{"epochs", t.epochs},
            {"batch_size", t.batch_size},
            {"shuffle", t.shuffle},
            {"validation_split", t.validation_split},
            {"seed", t.seed},
            {"optimizer", optimizer_json(t.optimizer)},
            {"loss",
             {{"name", t.loss.name},
              {"semantics", t.loss.semantics == LossSemantics::tensorflow ? "tensorflow" : "renormalized"},
              {"from_logits", t.loss.from_logits},
              {"label_smoothing", t.loss.label_smoothing}}},
            {"lr_schedule", schedule},
            {"reduce_lr_on_plateau",
             {{"enabled", p.enabled}, {"monitor", p.monitor}, {"factor", p.factor}, {"patience", p.patience},
              {"min_delta", p.min_delta}, {"cooldown", p.cooldown}, {"min_lr", p.min_lr}}},
            {"early_stopping",
             {{"enabled", e.enabled}, {"monitor", e.monitor}, {"min_delta", e.min_delta}, {"patience", e.patience},
              {"restore_best_weights", e.restore_best_weights}, {"start_from_epoch", e.start_from_epoch}}},
            {"augmentation",
             {{"rotation_range", a.rotation_range}, {"width_shift_range", a.width_shift_range},
              {"height_shift_range", a.height_shift_range}, {"zoom_range", a.zoom_range}, {"fill_mode", a.fill_mode},
              {"elastic_alpha", a.elastic_alpha}, {"elastic_sigma", a.elastic_sigma}}},
            {"accuracy_argmax", t.accuracy_argmax == AccuracyArgmax::logits ? "logits" : "outputs"},
            {"fused", t.fused},
            {"cuda_graph", t.cuda_graph}}}};
}

Config apply_overrides(const Config& c, const std::vector<std::string>& assignments) {
  json j = to_json(c);
  for (const auto& a : assignments) {
    const std::string shown = a.size() <= 100 ? a : a.substr(0, 100) + "...";  // as messages quote it
    const auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError("--set " + shown + ": expected KEY.PATH=VALUE, e.g. --set training.optimizer.learning_rate=0.01");
    const std::string key = a.substr(0, eq), text = a.substr(eq + 1);
    json value;
    try {
      value = parse_json(text, kMaxConfigDepth);
    } catch (const JsonTooDeep&) {
      throw UsageError("--set " + shown + ": the value is not a single value");
    } catch (const json::exception&) {
      value = text;  // bare words are strings: --set training.optimizer.name=sgd
      try {
        (void)value.dump();  // the resolved config is written as JSON, which needs UTF-8 (found by fuzz_config)
      } catch (const json::exception&) {
        throw UsageError("--set " + key.substr(0, 100) + "=...: the value is not valid UTF-8 text");
      }
    }
    const auto keys = split_path(key);
    std::string missing;
    json* target = keys.empty() ? nullptr : find_path(j, keys, missing);
    if (!target) throw UsageError("--set " + shown + ": " + (keys.empty() ? "empty key" : missing));
    if (target->is_structured() || value.is_structured())
      throw UsageError("--set " + shown + ": " + key + " is not a single value; set its fields one by one");
    const bool same_kind = (target->is_number() && value.is_number()) || (target->is_boolean() && value.is_boolean()) ||
                           (target->is_string() && value.is_string());
    if (!same_kind)
      throw UsageError("--set " + shown + ": " + key + " holds " + target->type_name() + " " + show(*target) + ", not " +
                       value.type_name() + " " + show(value));
    if (keys == std::vector<std::string>{"training", "lr_schedule", "name"}) {
      j["training"]["lr_schedule"] = {{"name", value}};  // another schedule: its own fields, given by later --set
      if (value == "exponential_decay") j["training"]["lr_schedule"].update({{"decay_steps", 1000}, {"decay_rate", 0.96}});
    } else if (keys == std::vector<std::string>{"training", "optimizer", "name"}) {
      j["training"]["optimizer"] = {{"name", value}};  // another optimizer: its own Keras defaults
      try {
        j["training"]["optimizer"] = optimizer_json(parse_optimizer(j["training"]["optimizer"]));
      } catch (const ConfigError& e) {
        throw UsageError(std::string("--set ") + a + ": " + e.what());
      }
    } else {
      *target = value;
    }
  }
  try {
    return parse_config(j);
  } catch (const ConfigError& e) {
    throw e.in("after --set");
  }
}

}  // namespace mnist
