// Internal to lib/placement: JSON parsing and problem formatting shared by the parser.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "eplb/core/error.hpp"

namespace eplb::placement::detail {

// Formats every problem as "'<source>' at <json pointer>: <text>" ("'<source>': <text>" for
// the document root) so that all messages of this module read alike.
class Reporter {
 public:
  explicit Reporter(std::string source) : source_(std::move(source)) {}
  void add(std::string_view pointer, std::string_view text);
  void throw_if_any() const { problems_.throw_if_any(); }

 private:
  std::string source_;
  core::ProblemList problems_;
};

// "/" + the key with RFC 6901 escaping, so a key such as "a/b" stays unambiguous.
std::string pointer_to_key(std::string_view key);

// What was found where something else was due: string "4", number 1.5, null, an array, ...
std::string describe(const nlohmann::json& value);

// The integer value of `value`, or nullopt when it is not a JSON integer (1.0 is not).
std::optional<int64_t> as_int(const nlohmann::json& value);

// Parses the text; also reports duplicate top-level keys, which nlohmann would silently
// collapse to the last value. A malformed document is thrown at once (with any problems
// reported so far): nothing else can be checked.
nlohmann::json parse_document(const std::string& text, Reporter& report);

}  // namespace eplb::placement::detail
