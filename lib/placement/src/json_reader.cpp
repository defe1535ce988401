// JSON parsing and problem formatting for the placement parser.
#include "json_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <vector>

namespace eplb::placement::detail {
namespace {

using nlohmann::json;

// Reformats nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 2:
// <detail>" as "malformed JSON at line 1, column 2 (byte 2): <detail>".
std::string describe_json_error(const json::exception& error) {
  std::string_view what = error.what();
  if (auto end = what.find("] "); end != std::string_view::npos) what.remove_prefix(end + 2);
  constexpr std::string_view kParseError = "parse error";
  const auto* parse_error = dynamic_cast<const json::parse_error*>(&error);
  if (parse_error == nullptr || !what.starts_with(kParseError)) {
    return fmt::format("malformed JSON: {}", what);
  }
  what.remove_prefix(kParseError.size());
  const auto colon = what.find(": ");
  if (colon == std::string_view::npos) return fmt::format("malformed JSON{}", what);
  return fmt::format("malformed JSON{} (byte {}): {}", what.substr(0, colon), parse_error->byte,
                     what.substr(colon + 2));
}

}  // namespace

void Reporter::add(std::string_view pointer, std::string_view text) {
  if (pointer.empty()) {
    problems_.add(fmt::format("'{}': {}", source_, text));
  } else {
    problems_.add(fmt::format("'{}' at {}: {}", source_, pointer, text));
  }
}

std::string pointer_to_key(std::string_view key) {
  std::string out = "/";
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string describe(const json& value) {
  constexpr size_t kMaxShown = 40;
  switch (value.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::null:
      return "null";
    default:
      break;
  }
  std::string shown = value.dump();
  if (shown.size() > kMaxShown) shown = shown.substr(0, kMaxShown) + "...";
  return fmt::format("{} {}", value.type_name(), shown);
}

std::optional<int64_t> as_int(const json& value) {
  if (value.is_number_unsigned()) {
    // Above int64 it is out of every range we check; saturate rather than wrap.
    return static_cast<int64_t>(std::min<uint64_t>(value.get<uint64_t>(), INT64_MAX));
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return std::nullopt;
}

json parse_document(const std::string& text, Reporter& report) {
  // One set per open object; only the top level is reported, as nested objects are
  // type errors anyway and their locations are unknown here.
  std::vector<std::set<std::string>> seen_keys;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) seen_keys.emplace_back();
    if (event == json::parse_event_t::object_end) seen_keys.pop_back();
    if (event == json::parse_event_t::key && !seen_keys.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen_keys.back().insert(key).second && seen_keys.size() == 1) {
        report.add(pointer_to_key(key), fmt::format("duplicate key \"{}\"", key));
      }
    }
    return true;
  };
  try {
    return json::parse(text, on_event);
  } catch (const json::exception& error) {
    report.add("", describe_json_error(error));
    report.throw_if_any();
    throw;  // unreachable: the line above always throws
  }
}

}  // namespace eplb::placement::detail
