#include "job_config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>

#include "eplb/core/error.hpp"
#include "eplb/core/input_file.hpp"

namespace eplb::app {
namespace {

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

std::string normalized_key(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return key;
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

std::vector<CLI::ConfigItem> read_config(const std::string& path) {
  std::istringstream text(core::read_input_file(path, "config file"));
  try {
    return CLI::ConfigTOML().from_config(text);
  } catch (const CLI::ParseError& e) {
    throw core::Error(core::ErrorKind::kInput, fmt::format("'{}': {}", path, e.what()));
  }
}

// key -> value for the options of `command` and the root; keys of other subcommands are
// skipped, keys of none are usage errors.
std::map<CLI::Option*, std::vector<std::string>> config_values(CLI::App& root, CLI::App* command,
                                                               const std::string& path) {
  std::map<CLI::Option*, std::vector<std::string>> out;
  core::ProblemList problems(core::ErrorKind::kUsage);
  for (const auto& item : read_config(path)) {
    if (item.name == "++" || item.name == "--") continue;  // section markers
    const std::string key = normalized_key(item.name);
    CLI::Option* opt = nullptr;
    bool known = false;
    if (item.parents.empty()) {
      opt = find_long(command, key);
      if (opt == nullptr) opt = find_long(&root, key);
      known = opt != nullptr;
      for (CLI::App* sub : root.get_subcommands({})) known = known || find_long(sub, key);
    } else if (item.parents.size() == 1) {
      CLI::App* sub = nullptr;
      try {
        sub = root.get_subcommand(item.parents[0]);
      } catch (const CLI::OptionNotFound&) {
      }
      known = sub != nullptr && find_long(sub, key) != nullptr;
      if (sub == command) opt = find_long(command, key);
    }
    if (!known) {
      problems.add(
          fmt::format("'{}': '{}' is not an option of any subcommand", path, item.fullname()));
    } else if (opt != nullptr) {
      out[opt] =
          opt->get_expected_min() == 0 ? std::vector{CLI::ConfigTOML().to_flag(item)} : item.inputs;
    }
  }
  problems.throw_if_any();
  return out;
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

CLI::App* named_command(CLI::App& root, const std::vector<std::string>& args) {
  const size_t at = skip_root_options(root, args);
  if (at >= args.size()) return nullptr;
  for (CLI::App* sub : root.get_subcommands({})) {
    if (sub->check_name(args[at])) return sub;
  }
  return nullptr;
}

JobConfig::JobConfig(CLI::App& root, CLI::App* command, const std::vector<std::string>& args)
    : root_(root), command_(command) {
  const std::string path = config_path(root, args);
  std::map<CLI::Option*, std::vector<std::string>> from_file;
  if (!path.empty()) from_file = config_values(root, command, path);
  for (CLI::App* app : {&root, command}) {
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
        injected_[opt] = "config " + path;
      }
    }
  }
}

nlohmann::json JobConfig::sources() const {
  nlohmann::json out = nlohmann::json::object();
  for (CLI::App* app : {&root_, command_}) {
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
      if (opt->count() > 0) {
        entry["value"] = opt->results().back();
      } else {
        entry["value"] = opt->get_default_str();
      }
      out["--" + opt->get_lnames().front()] = std::move(entry);
    }
  }
  return out;
}

}  // namespace eplb::app
