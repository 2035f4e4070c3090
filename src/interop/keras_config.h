// keras_config: a .keras archive's config.json (Keras's serialised Sequential model and its
// compile() arguments) <-> our Config. The layers map one to one (Keras class names are our layer
// types); what our configs cannot express is refused with the layer and key at fault, never
// dropped. compile() maps to the training section where it can (adam, adamw, sgd, rmsprop;
// sparse_categorical_crossentropy); what does not map is reported as a note and left at our
// defaults. Keras does not store epochs, batch size or callbacks; those are our defaults too.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace mnist {

// The Keras release whose .keras format keras_config_json writes and the tests load it into.
inline constexpr const char* kKerasFormatVersion = "3.15.1";

struct KerasConfig {
  Config config;
  std::vector<std::string> notes;  // compile() arguments that did not carry over, one sentence each
};

// `text` is config.json; `where` names it in errors (std::runtime_error, one line).
KerasConfig config_from_keras(const std::string& text, const std::string& where);

// config.json for `config`: a Sequential whose InputLayer is (28, 28) when the model starts with
// Flatten (as the paper's Flatten(input_shape=(28, 28))) and (28, 28, 1) otherwise, compiled with
// the config's optimizer (its initial learning rate), loss and the accuracy metric.
nlohmann::json keras_config_json(const Config& config);
nlohmann::json keras_metadata_json();  // metadata.json

}  // namespace mnist
