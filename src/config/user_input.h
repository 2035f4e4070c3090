// user_input: JSON from files and flags a user hands in, parsed with bounded nesting (a document
// nested 100,000 deep would otherwise exhaust the stack wherever it is walked) and shown in
// messages at bounded length.
#pragma once
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace mnist {

// The bytes of `file`; throws std::runtime_error "<what> <file> does not exist / is not a regular file /
// is larger than <max_bytes> bytes / cannot be read".
std::string read_user_file(const std::filesystem::path& file, const std::string& what, int64_t max_bytes);
// Throws the same unless `file` is an existing regular file (for readers that take a path, such as LibTorch's).
void require_regular_file(const std::filesystem::path& file, const std::string& what);

// Nesting deeper than a reader allows; what() is "nested deeper than N levels".
struct JsonTooDeep : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// More values than a reader takes; what() is "holds more than N values".
struct JsonTooLarge : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A key written twice in one object (JSON allows it; which value was meant is unknowable, so no
// reader here picks one); what() is "the key \"k\" appears twice in one object".
struct JsonDuplicateKey : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parses `text`; throws nlohmann::json::exception on invalid JSON, JsonTooDeep past `max_depth`
// levels of arrays and objects, before the deeper levels are built, JsonTooLarge past `max_values`
// values (numbers, strings, ...), before the rest are built (a document's tree takes 16-32 bytes a
// value, however few bytes of text each is), and JsonDuplicateKey.
nlohmann::json parse_json(const std::string& text, int max_depth, int64_t max_values = INT64_MAX);

// The JSON file at `path` (a History, say), parsed as parse_json does; throws std::runtime_error
// naming the file when it cannot be read, is not JSON or is nested deeper than `max_depth`.
// `python_non_finite`: also Python's json.dump's NaN, Infinity and -Infinity (words JSON lacks, which a
// diverged Keras run's History holds), read as the strings "NaN", "Infinity" and "-Infinity".
nlohmann::json read_json_file(const std::filesystem::path& path, int max_depth, bool python_non_finite = false);
// `text` with Python's bare NaN, Infinity and -Infinity (outside strings) quoted, as JSON strings.
std::string quote_python_non_finite(const std::string& text);

// `text` as one line a terminal shows as written: control bytes (a newline in a file name, an
// escape sequence) as \n, \r, \t or \xNN; other bytes as they are.
std::string printable(const std::string& text);

// A value as a message shows it: its JSON text, cut to about `max_chars` with "...".
std::string show_json(const nlohmann::json& value, size_t max_chars = 80);

}  // namespace mnist
