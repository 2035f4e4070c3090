// idx: IDX header, size and label checks on bytes.
#include "data/idx.h"

#include <cstdio>
#include <stdexcept>
#include <string>

namespace mnist {
namespace {

constexpr uint32_t kImageMagic = 2051, kLabelMagic = 2049;  // IDX: 0x0803 ubyte 3-D, 0x0801 ubyte 1-D
constexpr uint32_t kRows = kImageRows, kCols = kImageCols, kClasses = 10;

uint32_t big_endian(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

uint32_t check_idx_header(const unsigned char* head, size_t head_size, uint64_t file_size, bool images,
                          uint32_t expected_count) {
  const size_t header = images ? 16 : 8;
  const char* kind = images ? "IDX image file" : "IDX label file";
  if (head_size < header || file_size < header)
    throw std::runtime_error("is truncated: " + std::to_string(file_size) + " bytes, shorter than an " + kind + " header");
  const uint32_t magic = big_endian(head), magic_expected = images ? kImageMagic : kLabelMagic;
  if (magic != magic_expected) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "is not an %s (magic number 0x%08X, expected 0x%08X)", kind, magic, magic_expected);
    throw std::runtime_error(buf);
  }
  const uint32_t count = big_endian(head + 4);
  if (images) {
    const uint32_t rows = big_endian(head + 8), cols = big_endian(head + 12);
    if (rows != kRows || cols != kCols)
      throw std::runtime_error("holds " + std::to_string(rows) + "x" + std::to_string(cols) + " images, expected " +
                               std::to_string(kRows) + "x" + std::to_string(kCols));
  }
  if (count != expected_count)
    throw std::runtime_error("holds " + std::to_string(count) + " items; the MNIST loader expects the " +
                             std::to_string(expected_count) + "-item " + (expected_count == 60000 ? "training" : "test") + " set");
  const uint64_t expected_size = header + uint64_t(count) * (images ? kRows * kCols : 1);
  if (file_size != expected_size)
    throw std::runtime_error(std::string(file_size < expected_size ? "is truncated" : "has trailing bytes") + ": " +
                             std::to_string(file_size) + " bytes, expected " + std::to_string(expected_size) + " for " +
                             std::to_string(count) + " items");
  return count;
}

void check_label_values(const unsigned char* labels, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (labels[i] >= kClasses)
      throw std::runtime_error("has label " + std::to_string(labels[i]) + " at index " + std::to_string(i) + "; MNIST labels are 0..9");
}

}  // namespace mnist
