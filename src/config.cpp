// config: JSON -> typed, validated Config, and the --set overrides. Every error names its JSON path.
#include "config.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "errors.h"

namespace mnist {
namespace {

using nlohmann::json;

// Values as a user wrote them: -1, not -1.0.
std::string show(const json& v) {
  if (v.is_number_float() && std::isfinite(v.get<double>())) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.10g", v.get<double>());
    return buf;
  }
  return v.dump();
}

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

const std::vector<std::string> kActivations = {"linear", "relu", "sigmoid", "softmax", "tanh"};

Activation parse_activation(const std::string& s) {
  if (s == "relu") return Activation::relu;
  if (s == "sigmoid") return Activation::sigmoid;
  if (s == "softmax") return Activation::softmax;
  if (s == "tanh") return Activation::tanh;
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

LayerSpec parse_layer(const json& j, const std::string& path, std::map<std::string, int>& names) {
  ObjectReader r(j, path);
  if (!r.has("type")) throw ConfigError(path + ".type", "missing: every layer needs a \"type\" (Flatten, Dense)");
  LayerSpec layer;
  layer.type = r.choice("type", "", {"Flatten", "Dense"});
  layer.name = r.string("name", auto_name(layer.type, names));
  if (layer.type == "Flatten") {
    layer.params = FlattenSpec{};
    r.reject_unknown({"type", "name"});
  } else {
    DenseSpec d;
    if (!r.has("units")) throw ConfigError(r.path("units"), "missing: a Dense layer needs \"units\"");
    d.units = r.integer("units", 0);
    require(d.units >= 1 && d.units <= (1 << 20), r.path("units"), "must be between 1 and 1048576", d.units);
    d.activation = parse_activation(r.choice("activation", "linear", kActivations));
    d.use_bias = r.boolean("use_bias", true);
    layer.params = d;
    r.reject_unknown({"type", "name", "units", "activation", "use_bias"});
  }
  return layer;
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
  o.name = r.choice("name", "adam", {"adam", "sgd", "rmsprop"});
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
  r.reject_unknown({"name", "semantics", "from_logits"});
  return l;
}

TrainingConfig parse_training(const json& j) {
  ObjectReader r(j, "training");
  TrainingConfig t;
  t.epochs = r.integer("epochs", t.epochs);
  require(t.epochs >= 1 && t.epochs <= 100000, r.path("epochs"), "must be between 1 and 100000", t.epochs);
  t.batch_size = r.integer("batch_size", t.batch_size);
  require(t.batch_size >= 1 && t.batch_size <= 1000000, r.path("batch_size"), "must be between 1 and 1000000", t.batch_size);
  t.shuffle = r.boolean("shuffle", t.shuffle);
  t.validation_split = r.number("validation_split", t.validation_split);
  require(t.validation_split >= 0 && t.validation_split < 1, r.path("validation_split"), "must be in [0, 1)",
          t.validation_split);
  int64_t seed = r.integer("seed", 0);
  require(seed >= 0, r.path("seed"), "must be >= 0", seed);
  t.seed = static_cast<uint64_t>(seed);
  if (r.has("optimizer")) t.optimizer = parse_optimizer(r.raw("optimizer"));
  if (r.has("loss")) t.loss = parse_loss(r.raw("loss"));
  r.reject_unknown({"epochs", "batch_size", "shuffle", "validation_split", "seed", "optimizer", "loss"});
  return t;
}

// Cross-field rules: the output layer must fit the dataset and the loss.
void check_consistency(const Config& c) {
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

std::string to_string(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::sigmoid: return "sigmoid";
    case Activation::softmax: return "softmax";
    case Activation::tanh: return "tanh";
    case Activation::linear: break;
  }
  return "linear";
}

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
    j = json::parse(text);
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
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("config file " + path + " cannot be read: check the --config path");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config_text(ss.str(), path);
}

json to_json(const Config& c) {
  json layers = json::array();
  for (const auto& l : c.model.layers) {
    json jl = {{"type", l.type}, {"name", l.name}};
    if (const auto* d = std::get_if<DenseSpec>(&l.params)) {
      jl["units"] = d->units;
      jl["activation"] = to_string(d->activation);
      jl["use_bias"] = d->use_bias;
    }
    layers.push_back(jl);
  }
  const auto& t = c.training;
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
              {"from_logits", t.loss.from_logits}}}}}};
}

Config apply_overrides(const Config& c, const std::vector<std::string>& assignments) {
  json j = to_json(c);
  for (const auto& a : assignments) {
    const auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError("--set " + a + ": expected KEY.PATH=VALUE, e.g. --set training.optimizer.learning_rate=0.01");
    const std::string key = a.substr(0, eq), text = a.substr(eq + 1);
    json value;
    try {
      value = json::parse(text);
    } catch (const json::exception&) {
      value = text;  // bare words are strings: --set training.optimizer.name=sgd
    }
    const auto keys = split_path(key);
    std::string missing;
    json* target = keys.empty() ? nullptr : find_path(j, keys, missing);
    if (!target) throw UsageError("--set " + a + ": " + (keys.empty() ? "empty key" : missing));
    if (target->is_structured() || value.is_structured())
      throw UsageError("--set " + a + ": " + key + " is not a single value; set its fields one by one");
    const bool same_kind = (target->is_number() && value.is_number()) || (target->is_boolean() && value.is_boolean()) ||
                           (target->is_string() && value.is_string());
    if (!same_kind)
      throw UsageError("--set " + a + ": " + key + " holds " + target->type_name() + " " + target->dump() + ", not " +
                       value.type_name() + " " + value.dump());
    if (keys == std::vector<std::string>{"training", "optimizer", "name"}) {
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
