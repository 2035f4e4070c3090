// history: History and Progress to and from JSON, and History as Keras's CSVLogger writes it.
#include "train/history.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace mnist {

nlohmann::json History::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, list] : kHistoryLists) j[key] = this->*list;
  return j;
}

std::string History::to_csv() const {
  std::ostringstream out;
  out.precision(17);
  out << "epoch,accuracy,loss,val_accuracy,val_loss\n";
  for (size_t e = 0; e < epochs(); ++e)
    out << e << "," << accuracy[e] << "," << loss[e] << "," << val_accuracy[e] << "," << val_loss[e] << "\n";
  return out.str();
}

namespace {

// One entry of a History's list: a number, or a non-finite one as Python's json.dump writes it
// (read_json_file's "NaN", "Infinity", "-Infinity") or nlohmann's dump does (null: NaN).
double number_in(const nlohmann::json& x, const std::string& origin, const char* key) {
  if (x.is_number()) return x.get<double>();
  if (x.is_null() || x == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (x == "Infinity" || x == "-Infinity") return x == "Infinity" ? HUGE_VAL : -HUGE_VAL;
  throw std::runtime_error(origin + ": \"" + key + "\" must be a list of numbers (found " + x.dump() + ")");
}

}  // namespace

History History::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw std::runtime_error(origin + ": not a History (a JSON object of per-epoch lists)");
  auto read = [&](std::vector<double>& into, std::initializer_list<const char*> keys) {
    for (const char* key : keys) {
      if (!j.contains(key)) continue;
      const auto& v = j.at(key);
      if (!v.is_array()) throw std::runtime_error(origin + ": \"" + key + "\" must be a list of numbers");
      for (const auto& x : v) into.push_back(number_in(x, origin, key));
      return;
    }
  };
  History h;
  read(h.loss, {"loss"});
  read(h.accuracy, {"accuracy", "acc"});
  read(h.val_loss, {"val_loss"});
  read(h.val_accuracy, {"val_accuracy", "val_acc"});
  read(h.test_loss, {"test_loss"});
  read(h.test_accuracy, {"test_accuracy"});
  read(h.epoch_seconds, {"epoch_seconds"});
  read(h.learning_rate, {"learning_rate", "lr"});
  if (!j.contains("accuracy") && !j.contains("acc") && !j.contains("loss")) throw std::runtime_error(origin + ": has neither \"accuracy\" nor \"loss\": not a Keras History");
  // One entry per epoch in every list it has: lists of unequal length are not one run's History.
  const auto& [first, epochs] = h.loss.empty() ? kHistoryLists[1] : kHistoryLists[0];  // loss, else accuracy
  for (const auto& [key, list] : kHistoryLists)
    if (!(h.*list).empty() && (h.*list).size() != (h.*epochs).size())
      throw std::runtime_error(origin + ": \"" + key + "\" has " + std::to_string((h.*list).size()) + " entries where \"" + first + "\" has " +
                               std::to_string((h.*epochs).size()) + ": a History has one per epoch in each list");
  return h;
}

nlohmann::json Progress::to_json() const {
  return {{"step", step}, {"loss_sum", loss_sum}, {"correct", correct}, {"seconds", seconds}};
}

Progress Progress::from_json(const nlohmann::json& j) {
  return {j.at("step").get<int64_t>(), j.at("loss_sum").get<double>(), j.at("correct").get<double>(), j.at("seconds").get<double>()};
}

}  // namespace mnist
