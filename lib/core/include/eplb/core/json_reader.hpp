// The one strict JSON reader of the project: placements, manifests, safetensors headers,
// load statistics and engine placement files all parse through it, so every JSON problem
// reads alike and is located with a JSON pointer.
//
// Local and pure: acts on the calling process only.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "eplb/core/error.hpp"

namespace eplb::core::json {

// Formats every problem as "'<source>' at <json pointer>: <text>" ("'<source>': <text>" for
// the document root) so that all messages of the tool read alike.
class Reporter {
 public:
  explicit Reporter(std::string source, ErrorKind kind = ErrorKind::kInput)
      : source_(std::move(source)), problems_(kind) {}
  // `pointer` is relative to prefix() (empty: the document root).
  void add(std::string_view pointer, std::string_view text);
  // For an object embedded in a larger document (a manifest's placement): every pointer
  // added from now on is under `prefix` (e.g. "/placement").
  void set_prefix(std::string prefix) { prefix_ = std::move(prefix); }
  const std::string& prefix() const { return prefix_; }
  bool empty() const { return problems_.empty(); }
  const std::string& source() const { return source_; }
  const ProblemList& problems() const { return problems_; }
  void throw_if_any() const { problems_.throw_if_any(); }

 private:
  std::string source_;
  std::string prefix_;
  ProblemList problems_;
};

// "/" + the key with RFC 6901 escaping, so a key such as "a/b" stays unambiguous.
std::string pointer_to_key(std::string_view key);

// What was found where something else was due: string "4", number 1.5, null, an array, ...
std::string describe(const nlohmann::json& value);

// The integer value of `value`, or nullopt when it is not a JSON integer (1.0 is not).
// Unsigned values above INT64_MAX saturate (they are out of every range we check).
std::optional<int64_t> as_int(const nlohmann::json& value);

// Parses the text strictly. Duplicate keys, which nlohmann would silently collapse to the
// last value, are reported at every depth with their JSON pointer ("duplicate key \"x\"").
// Text that is not valid UTF-8 or not JSON is thrown at once (with any problems reported so
// far): nothing else can be checked. Duplicates alone do not throw; the caller decides when
// to call throw_if_any().
nlohmann::json parse_document(const std::string& text, Reporter& report);

}  // namespace eplb::core::json
