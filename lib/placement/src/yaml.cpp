// YAML text -> the equivalent JSON value, for TensorRT-LLM's moe_load_balancer.yaml and
// the LLM API options file that may nest it (docs/PLACEMENT.md).
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <string>

#include "reader.hpp"

namespace eplb::placement::detail {
namespace {

using core::json::pointer_to_key;

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF). JSON text is checked by its parser; YAML strings are not, and nlohmann's
// serializer, which writes our messages, throws on anything else.
bool valid_utf8(const std::string& text) {
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t len = 1;
    uint32_t code = lead;
    if (lead >= 0x80) {
      if ((lead & 0xE0) == 0xC0) {
        len = 2;
      } else if ((lead & 0xF0) == 0xE0) {
        len = 3;
      } else if ((lead & 0xF8) == 0xF0) {
        len = 4;
      } else {
        return false;
      }
      if (len > text.size() - i) return false;
      code = lead & (0x7Fu >> len);
      for (size_t k = 1; k < len; ++k) {
        const auto next = static_cast<unsigned char>(text[i + k]);
        if ((next & 0xC0) != 0x80) return false;
        code = (code << 6) | (next & 0x3Fu);
      }
      if (code < kMin[len] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    }
    i += len;
  }
  return true;
}

// YAML scalars: plain ones read as the JSON value they spell, quoted ones stay strings.
json yaml_scalar(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() != "?") return text;  // quoted ("!") or explicitly tagged: a string
  if (text == "null" || text == "~" || text.empty()) return nullptr;
  if (text == "true") return true;
  if (text == "false") return false;
  try {
    size_t used = 0;
    const long long number = std::stoll(text, &used, 10);
    if (used == text.size()) return static_cast<int64_t>(number);
  } catch (const std::exception&) {
  }
  try {
    size_t used = 0;
    const double number = std::stod(text, &used);
    if (used == text.size()) return number;
  } catch (const std::exception&) {
  }
  return text;
}

// `budget`: nodes left to convert. Aliases (*a) make a YAML document a graph whose
// expansion can grow exponentially with its size ("billion laughs"); a document without
// them has fewer nodes than twice its bytes, so only aliases exhaust a budget of that.
json yaml_node(const YAML::Node& node, const std::string& pointer, Reporter& report,
               size_t& budget) {
  if (budget == 0) {
    report.add("",
               "YAML aliases (*name) expand beyond what a file of this size holds written out: "
               "write the placement without aliases");
    report.throw_if_any();
  }
  --budget;
  switch (node.Type()) {
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        out.push_back(yaml_node(node[i], fmt::format("{}/{}", pointer, i), report, budget));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& item : node) {
        const std::string key = item.first.IsScalar() ? item.first.Scalar() : "";
        if (!item.first.IsScalar()) {
          report.add(pointer, "a key that is not a scalar");
          continue;
        }
        if (!valid_utf8(key)) {
          report.add(pointer, "a key that is not valid UTF-8");
          continue;
        }
        if (out.contains(key)) {
          report.add(pointer, fmt::format("duplicate key \"{}\"", key));
          continue;
        }
        out[key] = yaml_node(item.second, pointer + pointer_to_key(key), report, budget);
      }
      return out;
    }
    case YAML::NodeType::Scalar:
      if (!valid_utf8(node.Scalar())) {
        report.add(pointer, "a string that is not valid UTF-8");
        return nullptr;
      }
      return yaml_scalar(node);
    default:
      return nullptr;
  }
}

}  // namespace

json yaml_to_json(const std::string& text, Reporter& report) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& error) {
    report.add("", fmt::format("malformed YAML at line {}, column {}: {}", error.mark.line + 1,
                               error.mark.column + 1, error.msg));
    report.throw_if_any();
  }
  size_t budget = 2 * text.size() + 16;
  return yaml_node(root, "", report, budget);
}

}  // namespace eplb::placement::detail
