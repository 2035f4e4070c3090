// idx: the rules of the IDX files MNIST ships in (magic number, 28x28 shape, item count, exact
// size, labels 0..9), checked on bytes in memory. No torch and no files here, so the data loader
// and the fuzzer (tests/fuzz) drive the same code.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mnist {

// MNIST's (and Fashion-MNIST's) images: 28 x 28 pixels of one channel. Every shape in the program is
// written with these.
inline constexpr int64_t kImageRows = 28, kImageCols = 28;

// `head`: the file's first bytes (16 suffice for images, 8 for labels); `file_size`: its total
// size. Returns the item count. Throws std::runtime_error whose message completes the sentence
// "data file F ...", e.g. "is truncated: 5000 bytes, expected 47040016 for 60000 items".
uint32_t check_idx_header(const unsigned char* head, size_t head_size, uint64_t file_size, bool images,
                          uint32_t expected_count);

// The label bytes after the 8-byte header: each must be a class 0..9.
void check_label_values(const unsigned char* labels, size_t count);

}  // namespace mnist
