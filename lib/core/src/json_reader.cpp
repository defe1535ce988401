// The strict JSON reader (eplb/core/json_reader.hpp).
#include "eplb/core/json_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <vector>

namespace eplb::core::json {
namespace {

using Json = nlohmann::json;

// Reformats nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 2:
// <detail>" as "malformed JSON at line 1, column 2 (byte 2): <detail>".
std::string describe_json_error(const Json::exception& error) {
  std::string_view what = error.what();
  if (auto end = what.find("] "); end != std::string_view::npos) what.remove_prefix(end + 2);
  constexpr std::string_view kParseError = "parse error";
  const auto* parse_error = dynamic_cast<const Json::parse_error*>(&error);
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
  const std::string full = prefix_ + std::string(pointer);
  if (full.empty()) {
    problems_.add(fmt::format("'{}': {}", source_, text));
  } else {
    problems_.add(fmt::format("'{}' at {}: {}", source_, full, text));
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

std::string describe(const Json& value) {
  constexpr size_t kMaxShown = 40;
  switch (value.type()) {
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::null:
      return "null";
    default:
      break;
  }
  std::string shown = value.dump();
  if (shown.size() > kMaxShown) shown = shown.substr(0, kMaxShown) + "...";
  return fmt::format("{} {}", value.type_name(), shown);
}

std::optional<int64_t> as_int(const Json& value) {
  if (value.is_number_unsigned()) {
    // Above int64 it is out of every range we check; saturate rather than wrap.
    return static_cast<int64_t>(std::min<uint64_t>(value.get<uint64_t>(), INT64_MAX));
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return std::nullopt;
}

Json parse_document(const std::string& text, Reporter& report) {
  // One frame per open container: the pointer of the element being parsed is the
  // concatenation of every frame's current key (objects) or element index (arrays).
  struct Frame {
    bool is_array = false;
    int64_t num_done = 0;  // arrays: elements completed so far
    std::string key;       // objects: the key being parsed
    std::set<std::string> seen_keys;
  };
  std::vector<Frame> frames;
  auto pointer_of_parent = [&frames] {
    std::string out;
    for (const Frame& f : frames) {
      out += f.is_array ? "/" + std::to_string(f.num_done) : pointer_to_key(f.key);
    }
    return out;
  };
  auto child_done = [&frames] {
    if (!frames.empty() && frames.back().is_array) ++frames.back().num_done;
  };
  auto on_event = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        frames.emplace_back();
        frames.back().is_array = event == Json::parse_event_t::array_start;
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!frames.empty()) frames.pop_back();
        child_done();
        break;
      case Json::parse_event_t::key: {
        if (frames.empty()) break;
        const auto& key = parsed.get_ref<const std::string&>();
        Frame& frame = frames.back();
        frame.key = key;
        if (!frame.seen_keys.insert(key).second) {
          report.add(pointer_of_parent(), fmt::format("duplicate key \"{}\"", key));
        }
        break;
      }
      case Json::parse_event_t::value:
        child_done();
        break;
    }
    return true;
  };
  try {
    return Json::parse(text, on_event);
  } catch (const Json::exception& error) {
    report.add("", describe_json_error(error));
    report.throw_if_any();
    throw;  // unreachable: the line above always throws
  }
}

}  // namespace eplb::core::json
