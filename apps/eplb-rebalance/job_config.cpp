#include "job_config.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"
#include "usage.hpp"

namespace eplb::app {
namespace {

using core::Error;
using core::ErrorKind;

// Options that configure the parse itself, not the job.
bool is_meta(const CLI::Option& opt) {
  const auto& names = opt.get_lnames();
  return std::any_of(names.begin(), names.end(), [](const std::string& n) {
    return n == "help" || n == "version" || n == "config" || n == "help-all";
  });
}

std::vector<CLI::Option*> job_options(CLI::App* app) {
  std::vector<CLI::Option*> out;
  if (app == nullptr) return out;
  for (CLI::Option* opt : app->get_options()) {
    if (!opt->get_lnames().empty() && !is_meta(*opt)) out.push_back(opt);
  }
  return out;
}

CLI::Option* find_long(CLI::App* app, const std::string& key) {
  for (CLI::Option* opt : job_options(app)) {
    const auto& names = opt->get_lnames();
    if (std::find(names.begin(), names.end(), key) != names.end()) return opt;
  }
  return nullptr;
}

// The config file named by `--config FILE`/`--config=FILE` among the root's options, else
// by EPLB_CONFIG; empty if none.
std::string config_path(const CLI::App& root, const std::vector<std::string>& args) {
  const size_t end = skip_root_options(root, args);
  for (size_t i = 0; i < end; ++i) {
    if (args[i] == "--config" && i + 1 < end) return args[i + 1];
    if (args[i].starts_with("--config=")) return args[i].substr(9);
  }
  const char* env = std::getenv("EPLB_CONFIG");
  return env != nullptr ? env : "";
}

bool has_validator(CLI::Option* opt, const char* name) {
  try {
    opt->get_validator(name);
    return true;
  } catch (const CLI::OptionNotFound&) {
    return false;
  }
}

// A TOML value as the option's text, or why its type does not fit the option.
std::string option_text(CLI::Option* opt, const toml::node& node, const std::string& key,
                        std::string& why) {
  const bool flag = opt->get_expected_max() == 0;
  const bool integer = has_validator(opt, "integer");
  const bool seconds = has_validator(opt, "seconds");
  const bool size = has_validator(opt, "size");
  const std::string kind = node.is_string()           ? "a string"
                           : node.is_integer()        ? "an integer"
                           : node.is_floating_point() ? "a number"
                           : node.is_boolean()        ? "a boolean"
                           : node.is_array()          ? "an array"
                                                      : "a date or time";
  const auto refuse = [&](std::string_view wanted) {
    why =
        fmt::format("'{}' is {}, but --{} takes {}", key, kind, opt->get_lnames().front(), wanted);
    return std::string();
  };
  if (node.is_array()) return refuse("one value");
  if (flag)
    return node.is_boolean() ? (*node.value<bool>() ? "true" : "false") : refuse("true or false");
  if (node.is_boolean()) return refuse("a value, not true or false");
  if (integer && !node.is_integer()) return refuse("an integer");
  if (seconds && !node.is_integer() && !node.is_floating_point())
    return refuse("a number of seconds");
  if (size && !node.is_integer() && !node.is_string()) return refuse("a size (e.g. \"2GiB\")");
  if (node.is_string()) {
    if (integer || seconds) return refuse(integer ? "an integer" : "a number of seconds");
    return *node.value<std::string>();
  }
  if (node.is_integer()) return std::to_string(*node.value<int64_t>());
  if (node.is_floating_point()) return fmt::format("{}", *node.value<double>());
  return refuse("a string or a number");
}

std::vector<std::string> all_option_keys(CLI::App& root) {
  std::vector<std::string> keys;
  std::vector<CLI::App*> todo = {&root};
  while (!todo.empty()) {
    CLI::App* app = todo.back();
    todo.pop_back();
    for (CLI::Option* opt : job_options(app)) keys.push_back(opt->get_lnames().front());
    for (CLI::App* sub : app->get_subcommands({})) todo.push_back(sub);
  }
  return keys;
}

bool any_has(CLI::App& app, const std::string& key) {
  if (find_long(&app, key) != nullptr) return true;
  for (CLI::App* sub : app.get_subcommands({})) {
    if (any_has(*sub, key)) return true;
  }
  return false;
}

struct Walk {
  CLI::App& root;
  const std::vector<CLI::App*>& path;  // the running command, outermost first
  std::string file;
  std::map<CLI::Option*, std::string> values;
  core::ProblemList problems{ErrorKind::kUsage};

  std::string at(const toml::node& node) const {
    return fmt::format("'{}' line {}", file, node.source().begin.line);
  }

  // Keys of `table`, which belongs to `app` (nullptr: the top, whose keys apply to the
  // running command); `running` says whether `app` is on the running command's path.
  void table(const toml::table& t, CLI::App* app, bool running, const std::string& section);
  void value(const std::string& key, const toml::node& node, CLI::App* app, bool running,
             const std::string& section);
};

void Walk::table(const toml::table& t, CLI::App* app, bool running, const std::string& section) {
  for (auto&& [k, node] : t) {
    const std::string key(k.str());
    if (!node.is_table()) {
      value(key, node, app, running, section);
      continue;
    }
    CLI::App* parent = app == nullptr ? &root : app;
    CLI::App* sub = nullptr;
    for (CLI::App* s : parent->get_subcommands({})) {
      if (s->get_name() == key) sub = s;
    }
    const std::string name = section.empty() ? key : section + "." + key;
    if (sub == nullptr) {
      std::vector<std::string> names;
      for (CLI::App* s : parent->get_subcommands({})) {
        names.push_back(section.empty() ? s->get_name() : section + "." + s->get_name());
      }
      const auto guess = closest(name, names);
      problems.add(fmt::format("{}: [{}] is not a command{}", at(node), name,
                               guess ? fmt::format("; did you mean [{}]?", *guess) : ""));
      continue;
    }
    const bool on_path =
        (app == nullptr || running) && std::find(path.begin(), path.end(), sub) != path.end();
    table(*node.as_table(), sub, on_path, name);
  }
}

void Walk::value(const std::string& key_in, const toml::node& node, CLI::App* app, bool running,
                 const std::string& section) {
  std::string key = key_in;
  std::replace(key.begin(), key.end(), '_', '-');
  CLI::Option* opt = nullptr;
  bool known = false;
  if (app == nullptr) {  // the top: whichever running command has it, or the root
    for (auto it = path.rbegin(); opt == nullptr && it != path.rend(); ++it)
      opt = find_long(*it, key);
    if (opt == nullptr) opt = find_long(&root, key);
    known = opt != nullptr || any_has(root, key);
  } else {
    known = find_long(app, key) != nullptr;
    if (running) opt = find_long(app, key);
  }
  if (!known) {
    std::vector<std::string> keys =
        app == nullptr ? all_option_keys(root) : std::vector<std::string>{};
    if (app != nullptr) {
      for (CLI::Option* o : job_options(app)) keys.push_back(o->get_lnames().front());
    }
    const auto guess = closest(key, keys);
    problems.add(fmt::format("{}: '{}' is not an option of {}{}", at(node), key_in,
                             app == nullptr ? "any command" : "[" + section + "]",
                             guess ? fmt::format("; did you mean '{}'?", *guess) : ""));
    return;
  }
  if (opt == nullptr) return;  // another command's option
  std::string why;
  std::string text = option_text(opt, node, key_in, why);
  if (!why.empty()) {
    problems.add(fmt::format("{}: {}", at(node), why));
  } else {
    values[opt] = std::move(text);
  }
}

// Option -> value for the options of the running command and the root; keys of other
// subcommands are checked and skipped.
std::map<CLI::Option*, std::string> config_values(CLI::App& root,
                                                  const std::vector<CLI::App*>& path,
                                                  const std::string& file) {
  const std::string text = core::read_input_file(file, "config file");
  toml::table doc;
  try {
    doc = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw Error(ErrorKind::kInput,
                fmt::format("'{}' line {}, column {}: malformed TOML: {}", file,
                            e.source().begin.line, e.source().begin.column, e.description()));
  }
  Walk walk{root, path, file, {}};
  walk.table(doc, nullptr, true, "");
  walk.problems.throw_if_any();
  return walk.values;
}

}  // namespace

std::string env_name_for(const std::string& long_name) {
  std::string out = "EPLB_";
  for (char c : long_name) {
    out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

size_t skip_root_options(const CLI::App& root, const std::vector<std::string>& args) {
  size_t i = 0;
  while (i < args.size() && args[i].starts_with("-")) {
    const std::string& arg = args[i];
    const std::string name = arg.substr(0, arg.find('='));
    const CLI::Option* opt = root.get_option_no_throw(name);
    if (opt == nullptr || (is_meta(*opt) && name != "--config")) break;
    const bool takes_value = opt->get_expected_min() > 0 && arg.find('=') == std::string::npos;
    i += takes_value ? 2 : 1;
  }
  return std::min(i, args.size());
}

JobConfig::JobConfig(CLI::App& root, std::vector<CLI::App*> path,
                     const std::vector<std::string>& args) {
  apps_.push_back(&root);
  apps_.insert(apps_.end(), path.begin(), path.end());
  const std::string file = config_path(root, args);
  std::map<CLI::Option*, std::string> from_file;
  if (!file.empty()) from_file = config_values(root, path, file);
  for (CLI::App* app : apps_) {
    for (CLI::Option* opt : job_options(app)) {
      const std::string env = env_name_for(opt->get_lnames().front());
      opt->envname(env);
      // A later value replaces an earlier one: the command line's replaces these.
      if (opt->get_expected_max() <= 1) opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      const char* value = std::getenv(env.c_str());
      if (value != nullptr && *value != '\0') {
        opt->add_result(std::string(value));
        injected_[opt] = "environment " + env;
      } else if (auto it = from_file.find(opt); it != from_file.end()) {
        opt->add_result(it->second);
        injected_[opt] = "config " + file;
      }
    }
  }
}

nlohmann::json JobConfig::sources() const {
  nlohmann::json out = nlohmann::json::object();
  for (CLI::App* app : apps_) {
    for (CLI::Option* opt : job_options(app)) {
      const auto it = injected_.find(opt);
      const size_t from_elsewhere = it == injected_.end() ? 0 : 1;
      nlohmann::json entry;
      if (opt->count() > from_elsewhere) {
        entry["source"] = "command line";
      } else if (from_elsewhere > 0) {
        entry["source"] = it->second;
      } else {
        entry["source"] = "default";
      }
      entry["value"] = opt->count() > 0 ? opt->results().back() : opt->get_default_str();
      out["--" + opt->get_lnames().front()] = std::move(entry);
    }
  }
  return out;
}

}  // namespace eplb::app
