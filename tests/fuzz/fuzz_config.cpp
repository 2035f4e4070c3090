// libFuzzer target: the config parser and --set overrides (src/config.cpp). Input: a config text,
// optionally followed by a line "\n--set KEY=VALUE".
#include <cstdint>
#include <string>

#include "config/config.h"
#include "config/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const auto split = input.find("\n--set ");
  try {
    const mnist::Config c = mnist::parse_config_text(input.substr(0, split), "fuzz");
    if (split != std::string::npos) mnist::apply_overrides(c, {input.substr(split + 7)});
    (void)mnist::to_json(c).dump();
  } catch (const mnist::UsageError&) {
  }
  return 0;
}
