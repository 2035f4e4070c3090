// libFuzzer target: Keras's own files (src/keras_files.cpp through libhdf5 and libzip, and
// src/keras_config.cpp): each input is read as a .keras archive and as a .weights.h5 file for the
// model of tests/data/keras/tiny-cnn.keras, whose files seed the corpus. libhdf5 reads in a child
// process (keras_files.h): what it does on a corrupt file, crashes included, reaches this target as
// our one-line error. A sanitizer report from the child still shows in the fuzzer's log, but the
// child does not report it as this target's crash.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "config/config.h"
#include "interop/keras_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const mnist::Config config = mnist::read_keras_model("tests/data/keras/tiny-cnn.keras").config;  // run from the repository root
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    mnist::parse_keras_model(bytes, "fuzz.keras");
  } catch (const std::runtime_error&) {
  }
  try {
    mnist::parse_keras_weights_h5(bytes, config, "fuzz.weights.h5");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
