// keras_names: Keras's to_snake_case, regular expression for regular expression.
#include "config/keras_names.h"

#include <cctype>
#include <regex>

namespace mnist {

std::string keras_snake_case(const std::string& class_name) {
  std::string name = std::regex_replace(class_name, std::regex(R"(\W+)"), "");
  name = std::regex_replace(name, std::regex("(.)([A-Z][a-z]+)"), "$1_$2");
  name = std::regex_replace(name, std::regex("([a-z])([A-Z])"), "$1_$2");
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string KerasLayerNames::next(const std::string& class_name) {
  const std::string base = keras_snake_case(class_name);
  const int n = seen_[base]++;
  return n == 0 ? base : base + "_" + std::to_string(n);
}

}  // namespace mnist
