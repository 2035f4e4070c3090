// json_input: bounded JSON parsing and display.
#include "json_input.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace mnist {

nlohmann::json parse_json(const std::string& text, int max_depth) {
  // nlohmann calls back at every value with its depth; throwing there stops the parse.
  return nlohmann::json::parse(text, [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > max_depth) throw JsonTooDeep("nested deeper than " + std::to_string(max_depth) + " levels");
    return true;
  });
}

nlohmann::json read_json_file(const std::filesystem::path& path, int max_depth) {
  std::ifstream in(path, std::ios::binary);
  if (!in || !std::filesystem::is_regular_file(path)) throw std::runtime_error(path.string() + " cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parse_json(text.str(), max_depth);
  } catch (const JsonTooDeep& e) {
    throw std::runtime_error(path.string() + " is " + e.what());
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
