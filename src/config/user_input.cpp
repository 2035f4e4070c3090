// user_input: bounded JSON parsing and display.
#include "config/user_input.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_set>
#include <vector>

namespace mnist {

void require_regular_file(const std::filesystem::path& file, const std::string& what) {
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (ec && ec != std::errc::no_such_file_or_directory)  // a link loop, a folder on the way that cannot be searched
    throw std::runtime_error(what + " " + file.string() + " cannot be read (" + ec.message() + ")");
  if (!std::filesystem::exists(status)) throw std::runtime_error(what + " " + file.string() + " does not exist");
  if (!std::filesystem::is_regular_file(status))
    throw std::runtime_error(what + " " + file.string() + " is not a regular file (a folder, FIFO or device cannot be read as one)");
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);  // a permission problem is said as one, not as damage
  if (fd < 0) throw std::runtime_error(what + " " + file.string() + " cannot be read (" + std::strerror(errno) + ")");
  ::close(fd);
}

std::string printable(const std::string& text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      out += c;
    } else if (c == '\n' || c == '\r' || c == '\t') {
      out += c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t";
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", byte);
      out += hex;
    }
  }
  return out;
}

std::string read_user_file(const std::filesystem::path& file, const std::string& what, int64_t max_bytes) {
  require_regular_file(file, what);
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) throw std::runtime_error(what + " " + file.string() + " cannot be read (" + ec.message() + ")");
  if (size > static_cast<uintmax_t>(max_bytes))
    throw std::runtime_error(what + " " + file.string() + " is " + std::to_string(size) + " bytes, more than the " +
                             std::to_string(max_bytes) + " any such file here needs");
  std::ifstream in(file, std::ios::binary);
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!in || in.gcount() != static_cast<std::streamsize>(bytes.size())) throw std::runtime_error(what + " " + file.string() + " cannot be read");
  return bytes;
}

nlohmann::json parse_json(const std::string& text, int max_depth, int64_t max_values) {
  // nlohmann calls back at every value and key with its depth; throwing there stops the parse.
  using Event = nlohmann::json::parse_event_t;
  int64_t values = 0;
  std::vector<std::unordered_set<std::string>> keys;  // of each object being read, innermost last
  return nlohmann::json::parse(text, [&](int depth, Event event, nlohmann::json& parsed) {
    if (depth > max_depth) throw JsonTooDeep("nested deeper than " + std::to_string(max_depth) + " levels");
    if (event == Event::value && ++values > max_values) throw JsonTooLarge("holds more than " + std::to_string(max_values) + " values");
    if (event == Event::object_start) keys.emplace_back();
    if (event == Event::object_end) keys.pop_back();
    if (event == Event::key && !keys.back().insert(parsed.get<std::string>()).second)
      throw JsonDuplicateKey("the key " + show_json(parsed) + " appears twice in one object");
    return true;
  });
}

std::string quote_python_non_finite(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    in_string = c == '"';
    const char* word = nullptr;
    for (const char* w : {"NaN", "Infinity", "-Infinity"})
      if (text.compare(i, std::strlen(w), w) == 0) word = w;
    if (!word) {
      out += c;
      continue;
    }
    out += std::string("\"") + word + "\"";
    i += std::strlen(word) - 1;
  }
  return out;
}

nlohmann::json read_json_file(const std::filesystem::path& path, int max_depth, bool python_non_finite) {
  const std::string read = read_user_file(path, "file", /*max_bytes=*/int64_t{64} << 20);
  const std::string text = python_non_finite ? quote_python_non_finite(read) : read;
  try {
    return parse_json(text, max_depth);
  } catch (const JsonTooDeep& e) {
    throw std::runtime_error(path.string() + " is " + e.what());
  } catch (const JsonDuplicateKey& e) {
    throw std::runtime_error(path.string() + ": " + e.what() + "; keep one");
  } catch (const nlohmann::json::exception&) {
    throw std::runtime_error(path.string() + " is not valid JSON");
  }
}

std::string show_json(const nlohmann::json& value, size_t max_chars) {
  std::string text;
  if (value.is_number_float() && std::isfinite(value.get<double>())) {  // as a user wrote it: -1, not -1.0
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.10g", value.get<double>());
    text = buf;
  } else {
    text = value.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
  }
  return text.size() <= max_chars ? text : text.substr(0, max_chars) + "...";
}

}  // namespace mnist
