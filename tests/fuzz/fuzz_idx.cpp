// libFuzzer target: the IDX rules (src/idx.cpp) on arbitrary bytes, as image and as label file.
#include <cstdint>
#include <stdexcept>

#include "data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (bool images : {true, false}) {
    // Expect the count the header claims, so inputs that pass the count check reach the size and
    // label checks too.
    const uint32_t claimed = size >= 8 ? (uint32_t(data[4]) << 24 | uint32_t(data[5]) << 16 | uint32_t(data[6]) << 8 | data[7]) : 0;
    try {
      const uint32_t count = mnist::check_idx_header(data, size, size, images, claimed);
      if (!images) mnist::check_label_values(data + 8, count);
    } catch (const std::runtime_error&) {
    }
  }
  return 0;
}
