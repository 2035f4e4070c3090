// libFuzzer target: the Keras get_weights() JSON reader (src/keras_import.cpp) against the paper's
// layer list with a small hidden layer.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "config/config.h"
#include "interop/keras_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const mnist::Config config = mnist::parse_config_text(
      R"({"model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "relu"},
                              {"type": "Dense", "units": 10, "activation": "softmax", "use_bias": false}]}})", "fuzz");
  try {
    mnist::parse_keras_weights(std::string(reinterpret_cast<const char*>(data), size), config, "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
