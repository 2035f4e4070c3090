// keras_config: Keras's serialised model config <-> ours, layer by layer.
#include "interop/keras_config.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include "config/errors.h"
#include "config/user_input.h"
#include "data/idx.h"
#include "model/model.h"

namespace mnist {
namespace {

// Keras's batch_shape of our input: (None, 28, 28) before a Flatten, else (None, 28, 28, 1).
json keras_input_shape(bool flat) {
  return flat ? json::array({nullptr, kImageRows, kImageCols}) : json::array({nullptr, kImageRows, kImageCols, 1});
}

using nlohmann::json;

// A float32 that Keras serialised as a double (0.0010000000474974513) in its shortest decimal (0.001).
double shortest_float(double value) {
  const float f = static_cast<float>(value);
  char text[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, static_cast<double>(f));
    if (std::strtof(text, nullptr) == f) return std::strtod(text, nullptr);
  }
  return value;
}

// j[key] when j is an object holding a string there, else "".
std::string text_at(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// Keras's class name of an activation, serialised as "relu" or as {"class_name": ..., "config": "relu"}.
json activation_name(const json& value) {
  if (value.is_object() && value.contains("config") && value["config"].is_string()) return value["config"];
  return value;
}

// The keys of Keras's config of a layer that this program fixes (config.h: keras_constants()).
template <class T, class = void>
struct HasKerasConstants : std::false_type {};
template <class T>
struct HasKerasConstants<T, std::void_t<decltype(T::keras_constants())>> : std::true_type {};
json keras_constants(const LayerParams& params) {
  return std::visit(
      [](const auto& spec) -> json {
        using T = std::decay_t<decltype(spec)>;
        if constexpr (HasKerasConstants<T>::value) return T::keras_constants();
        else return json::object();
      },
      params);
}

// One Keras layer's config, read for one of our layer types. Every key is either carried into our
// layer (`take`), required to hold Keras's default (`require_default`), or of no consequence once the
// weights are loaded (initializers, seeds, names of dtype policies that are float32).
class LayerReader {
 public:
  LayerReader(const json& config, std::string where) : config_(config), where_(std::move(where)) {}

  void take(json& ours, const std::string& key, const std::string& our_key = "") const {
    if (config_.contains(key) && !config_[key].is_null()) ours[our_key.empty() ? key : our_key] = config_[key];
  }
  // Keys whose any other value changes what the layer computes or how it trains.
  void require_default(const std::string& key, const json& keras_default) const {
    if (!config_.contains(key) || config_[key] == keras_default || config_[key].is_null()) return;
    throw std::runtime_error(where_ + ": " + key + " = " + config_[key].dump() + " is not supported (only " + keras_default.dump() + ")");
  }
  void require_null(const std::string& key) const {
    if (!config_.contains(key) || config_[key].is_null()) return;
    throw std::runtime_error(where_ + ": " + key + " is set, which is not supported here (remove it in Keras and save again)");
  }
  void require_float32() const {
    if (!config_.contains("dtype") || config_["dtype"].is_null()) return;
    const json& d = config_["dtype"];
    const json name = d.is_object() && d.contains("config") && d["config"].is_object() ? d["config"].value("name", json()) : d;
    if (name != "float32") throw std::runtime_error(where_ + ": dtype " + name.dump() + " is not supported (only float32)");
  }

 private:
  const json& config_;
  std::string where_;
};

// Keys of Keras's layer configs that must be unset: what they add (a penalty, a constraint, noise
// shapes, quantisation) is not here.
constexpr const char* kUnsupportedWhenSet[] = {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                               "kernel_constraint",  "bias_constraint",  "beta_regularizer",
                                               "gamma_regularizer",  "beta_constraint",  "gamma_constraint",
                                               "quantization_config", "noise_shape"};

// BatchNormalization's channels axis, as Keras may write it: -1 or 3 (alone or in a list).
bool channels_axis(const json& axis) {
  for (const json& same : {json(-1), json(3), json::array({-1}), json::array({3})})
    if (axis == same) return true;
  return false;
}

// One Keras layer as one of our layer specs (JSON, validated later by parse_config): the keys our
// spec declares (config.h) carry over; the keys it fixes (keras_constants) must hold those values.
json convert_layer(const json& layer, size_t index, const std::string& where) {
  const std::string kind = text_at(layer, "class_name");
  const json config = layer.contains("config") && layer["config"].is_object() ? layer["config"] : json::object();
  const std::string name = text_at(config, "name");
  const std::string at = where + ": layers[" + std::to_string(index) + "] (" + kind + (name.empty() ? "" : " '" + name + "'") + ")";
  LayerParams params;
  if (!layer_of_type(kind, params)) {
    std::string types;
    for (const auto& t : layer_types()) types += (types.empty() ? "" : ", ") + t;
    throw std::runtime_error(at + " is not a layer type this program has: " + types);
  }
  LayerReader r(config, at);
  r.require_float32();
  r.require_default("trainable", true);
  r.require_default("lora_rank", nullptr);
  for (const char* key : kUnsupportedWhenSet) r.require_null(key);
  const json constants = keras_constants(params);
  for (auto it = constants.begin(); it != constants.end(); ++it) {
    if (it.key() == "axis" && config.contains("axis") && !config["axis"].is_null() && !channels_axis(config["axis"]))
      throw std::runtime_error(at + ": axis = " + config["axis"].dump() + " is not supported (only the channels axis, -1)");
    if (it.key() != "axis") r.require_default(it.key(), it.value());
  }
  json ours = {{"type", kind}};
  if (!name.empty()) ours["name"] = name;
  for (const auto& key : std::visit([](const auto& spec) { return field_keys(spec); }, params)) {
    if (key == "activation" && config.contains("activation")) ours["activation"] = activation_name(config["activation"]);
    else r.take(ours, key);
  }
  return ours;
}

// The optimizer Keras's compile() took, by class or by name ("Adam", "adam"); nullptr if none here.
const OptimizerName* optimizer_named(const std::string& kind) {
  std::string lowered = kind;
  for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const OptimizerName* found = nullptr;
  for (const auto& o : kOptimizers)
    if (kind == o.keras_class || lowered == o.name) found = &o;
  return found;
}

// The settings of Keras's optimizer config `config` that carry over (our optimizer's own keys);
// what does not becomes a note.
json convert_optimizer(const OptimizerName& found, const std::string& kind, const json& config, std::vector<std::string>& notes) {
  json ours = {{"name", found.name}};
  for (const auto& key : field_keys(OptimizerConfig::keras_defaults(found.value))) {
    if (key == "name" || !config.contains(key) || config[key].is_null()) continue;
    if (config[key].is_number_float()) ours[key] = shortest_float(config[key].get<double>());
    else if (config[key].is_number() || config[key].is_boolean()) ours[key] = config[key];
    else notes.push_back("optimizer " + kind + ": " + key + " = " + config[key].dump() + " (a schedule?) did not carry over; the training section uses Keras's default");
  }
  for (const char* key : {"clipnorm", "global_clipnorm", "clipvalue", "loss_scale_factor", "gradient_accumulation_steps"})
    if (config.contains(key) && !config[key].is_null()) notes.push_back(std::string("optimizer ") + kind + ": " + key + " did not carry over");
  if (found.value == Optimizer::adam && config.contains("weight_decay") && !config["weight_decay"].is_null())
    notes.push_back("optimizer Adam: weight_decay did not carry over (use adamw)");
  if (config.value("amsgrad", json()) == true) notes.push_back("optimizer " + kind + ": amsgrad did not carry over");
  if (config.value("use_ema", json()) == true) notes.push_back("optimizer " + kind + ": use_ema did not carry over");
  return ours;
}

// compile()'s loss as our training.loss (null: our default); another loss becomes a note.
json convert_loss(const json& loss, std::vector<std::string>& notes) {
  const std::string kind = loss.is_string() ? loss.get<std::string>() : text_at(loss, "class_name");
  if (kind != "sparse_categorical_crossentropy" && kind != "SparseCategoricalCrossentropy") {
    notes.push_back("loss " + (kind.empty() ? loss.dump() : kind) + " has no counterpart here: the training section uses sparse_categorical_crossentropy");
    return nullptr;
  }
  const bool from_logits = loss.is_object() && loss.contains("config") && loss["config"].is_object() &&
                           loss["config"].value("from_logits", json()) == true;
  return from_logits ? json{{"from_logits", true}} : json(nullptr);
}

// compile()'s optimizer and loss as our training section; what does not carry over becomes a note.
json convert_training(const json& compile, std::vector<std::string>& notes) {
  json training = json::object();
  if (!compile.is_object() || compile.value("optimizer", json()).is_null()) {
    notes.push_back("the model was saved uncompiled: the training section holds our defaults (adam, sparse_categorical_crossentropy)");
    return training;
  }
  const json& optimizer = compile.value("optimizer", json());
  const std::string kind = optimizer.is_string() ? optimizer.get<std::string>() : text_at(optimizer, "class_name");
  const json config = optimizer.is_object() && optimizer.contains("config") && optimizer["config"].is_object() ? optimizer["config"] : json::object();
  if (const OptimizerName* found = optimizer_named(kind))
    training["optimizer"] = convert_optimizer(*found, kind, config, notes);
  else
    notes.push_back("optimizer " + (kind.empty() ? optimizer.dump() : kind) + " has no counterpart here: the training section uses adam");
  const json loss = convert_loss(compile.value("loss", json()), notes);
  if (!loss.is_null()) training["loss"] = loss;
  return training;
}

// Our layer as Keras's layer config: our spec's keys, the keys Keras has that we fix, and the common ones.
json layer_config(const LayerSpec& l) {
  json c = to_json(l);
  c.erase("type");
  c.update(keras_constants(l.params));
  c.update({{"trainable", true}, {"dtype", "float32"}});
  return {{"module", "keras.layers"}, {"class_name", l.type()}, {"config", c}, {"registered_name", nullptr}};
}

json compile_config(const TrainingConfig& t) {
  const char* kind = "";
  for (const auto& o : kOptimizers)
    if (o.value == t.optimizer.name) kind = o.keras_class;
  const json loss = {{"module", "keras.losses"},
                     {"class_name", "SparseCategoricalCrossentropy"},
                     {"config", {{"name", "sparse_categorical_crossentropy"}, {"reduction", "sum_over_batch_size"}, {"from_logits", t.loss.from_logits}}},
                     {"registered_name", nullptr}};
  return {{"optimizer", {{"module", "keras.optimizers"}, {"class_name", kind}, {"config", to_json(t.optimizer)}, {"registered_name", nullptr}}},
          {"loss", loss},
          {"metrics", json::array({"accuracy"})}};
}

}  // namespace

namespace {

constexpr int64_t kMaxKerasConfigValues = 1 << 20;

// The text as a Keras Sequential model's serialised config; throws naming `where` when it is not one.
json sequential_config(const std::string& text, const std::string& where) {
  json keras;
  try {
    // Keras nests a layer's dtype policy about eight levels down, and writes about 30 values a layer
    // (tests/data/keras/tiny-cnn.keras: 217 for 8 layers), so a million is a model of 30,000 layers.
    keras = parse_json(text, /*max_depth=*/64, /*max_values=*/kMaxKerasConfigValues);
  } catch (const JsonTooDeep& e) {
    throw std::runtime_error(where + " is " + e.what() + ": not a Keras model config");
  } catch (const JsonTooLarge& e) {
    throw std::runtime_error(where + " " + e.what() + ": more than any Keras model config here holds");
  } catch (const JsonDuplicateKey& e) {
    throw std::runtime_error(where + ": " + e.what() + ": not a config Keras wrote");
  } catch (const json::exception&) {
    throw std::runtime_error(where + " is not valid JSON");
  }
  if (!keras.is_object()) throw std::runtime_error(where + " is not a Keras model config (a JSON object)");
  const std::string kind = text_at(keras, "class_name");
  if (kind != "Sequential")
    throw std::runtime_error(where + ": the model is " + (kind.empty() ? "not a Keras model" : "a " + kind) +
                             "; only Sequential models (a stack of layers) can be imported");
  const json& model = keras.value("config", json::object());
  if (!model.is_object() || !model.contains("layers") || !model["layers"].is_array())
    throw std::runtime_error(where + ": the Sequential config has no list of layers");
  return keras;
}

// The Sequential's layers as ours; its InputLayer (first, if any) must take our images.
json convert_layers(const json& keras_layers, const std::string& where) {
  json layers = json::array();
  for (size_t i = 0; i < keras_layers.size(); ++i) {
    const json& layer = keras_layers[i];
    if (!layer.is_object()) throw std::runtime_error(where + ": layers[" + std::to_string(i) + "] is not a layer config");
    if (layer.value("class_name", json()) != "InputLayer") {
      layers.push_back(convert_layer(layer, i, where));
      continue;
    }
    const json& c = layer.value("config", json::object());
    const json shape = c.is_object() ? c.value("batch_shape", c.value("batch_input_shape", json())) : json();
    if (i != 0 || (shape != keras_input_shape(/*flat=*/true) && shape != keras_input_shape(/*flat=*/false)))
      throw std::runtime_error(where + ": the model's input is " + shape.dump() + "; models here take " + std::to_string(kImageRows) +
                               "x" + std::to_string(kImageCols) + " images, " + format_shape({kImageRows, kImageCols}) + " or " +
                               format_shape(kImageShape));
  }
  return layers;
}

}  // namespace

KerasConfig config_from_keras(const std::string& text, const std::string& where) {
  const json keras = sequential_config(text, where);
  const json& model = keras["config"];
  KerasConfig out;
  json ours;
  try {
    ours = {{"model", {{"layers", convert_layers(model["layers"], where)}}}};
    if (model.contains("name") && model["name"].is_string()) ours["name"] = model["name"];
    ours["training"] = convert_training(keras.value("compile_config", json()), out.notes);
  } catch (const json::exception& e) {
    // A key of the wrong JSON type somewhere Keras never puts one (nlohmann's message, without its tag).
    const std::string what = e.what();
    const auto tag = what.find("] ");
    throw std::runtime_error(where + " is not a Keras model config this program can read: " +
                             (tag == std::string::npos ? what : what.substr(tag + 2)));
  }
  try {
    out.config = parse_config(ours);
  } catch (const ConfigError& e) {
    throw std::runtime_error(where + ", as our config: " + e.what());
  }
  return out;
}

json keras_config_json(const Config& config) {
  const bool flat_input = !config.model.layers.empty() && std::holds_alternative<FlattenSpec>(config.model.layers.front().params);
  const json batch_shape = keras_input_shape(flat_input);
  json layers = json::array({{{"module", "keras.layers"},
                              {"class_name", "InputLayer"},
                              {"config", {{"batch_shape", batch_shape}, {"dtype", "float32"}, {"sparse", false}, {"name", "input_layer"}}},
                              {"registered_name", nullptr}}});
  for (const auto& l : config.model.layers) layers.push_back(layer_config(l));
  return {{"module", "keras"},
          {"class_name", "Sequential"},
          {"config", {{"name", config.name}, {"trainable", true}, {"dtype", "float32"}, {"layers", layers}}},
          {"registered_name", nullptr},
          {"build_config", {{"input_shape", batch_shape}}},
          {"compile_config", compile_config(config.training)}};
}

json keras_metadata_json() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d@%H:%M:%S", std::localtime(&now));
  return {{"keras_version", kKerasFormatVersion}, {"date_saved", date}};
}

}  // namespace mnist
