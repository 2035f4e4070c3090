// Test helpers: temporary directories, synthetic IDX files, and running the mnist binary.
#pragma once
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace testing_helpers {
namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed when the object dies.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "mnist-test-XXXXXX").string();
    path = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
};

inline void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

// The synthetic pattern every test that loads images checks against.
inline uint8_t synthetic_pixel(uint32_t image, uint32_t pixel) { return static_cast<uint8_t>((image * 7 + pixel) % 256); }
inline uint8_t synthetic_label(uint32_t image) { return static_cast<uint8_t>((image * 3) % 10); }

inline std::string idx_images(uint32_t count, uint32_t rows = 28, uint32_t cols = 28, uint32_t magic = 2051) {
  std::string out;
  put_u32(out, magic);
  put_u32(out, count);
  put_u32(out, rows);
  put_u32(out, cols);
  out.reserve(16 + size_t(count) * rows * cols);
  for (uint32_t i = 0; i < count; ++i)
    for (uint32_t p = 0; p < rows * cols; ++p) out.push_back(static_cast<char>(synthetic_pixel(i, p)));
  return out;
}

inline std::string idx_labels(uint32_t count, uint32_t magic = 2049) {
  std::string out;
  put_u32(out, magic);
  put_u32(out, count);
  for (uint32_t i = 0; i < count; ++i) out.push_back(static_cast<char>(synthetic_label(i)));
  return out;
}

inline void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

inline void write_gzip(const fs::path& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb1");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

// A complete synthetic MNIST directory (the built-in loader insists on 60000 + 10000 items).
inline void write_synthetic_mnist(const fs::path& dir, bool gzip = false) {
  const std::pair<std::string, std::string> files[] = {{"train-images-idx3-ubyte", idx_images(60000)},
                                                       {"train-labels-idx1-ubyte", idx_labels(60000)},
                                                       {"t10k-images-idx3-ubyte", idx_images(10000)},
                                                       {"t10k-labels-idx1-ubyte", idx_labels(10000)}};
  for (const auto& [name, bytes] : files) {
    if (gzip)
      write_gzip(dir / (name + ".gz"), bytes);
    else
      write_file(dir / name, bytes);
  }
}

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs the mnist binary (path compiled in) with `args`, from the repository root.
inline CommandResult run_mnist(const std::string& args) {
  TempDir tmp;
  const std::string cmd = std::string("'") + MNIST_BINARY + "' " + args + " >'" + (tmp / "out").string() + "' 2>'" +
                          (tmp / "err").string() + "'";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(tmp / "out");
  r.err = slurp(tmp / "err");
  return r;
}

}  // namespace testing_helpers
