// keras_names: how Keras names a layer from its class. The class name in snake case
// (keras.src.utils.naming.to_snake_case: "MaxPooling2D" -> "max_pooling2d"), numbered within a model
// from a class's second layer on: "dense", "dense_1", "dense_2". A config's unnamed layers and the
// slots of Keras's weight files (keras.src.saving.saving_lib) are both named this way.
#pragma once
#include <map>
#include <string>

namespace mnist {

std::string keras_snake_case(const std::string& class_name);

// Names the layers of one model in order.
class KerasLayerNames {
 public:
  std::string next(const std::string& class_name);

 private:
  std::map<std::string, int> seen_;  // snake-case name -> layers of that class so far
};

}  // namespace mnist
