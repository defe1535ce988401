#include "usage.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "job_config.hpp"

namespace eplb::app {
namespace {

bool has_validator(const CLI::Option* opt, const char* name) {
  try {
    const_cast<CLI::Option*>(opt)->get_validator(name);
    return true;
  } catch (const CLI::OptionNotFound&) {
    return false;
  }
}

// The value's name in --help: what our validators or type names say, never CLI11's "INT:",
// "TEXT:FILE" or "{a->0,...}".
std::string value_name(const CLI::Option* opt) {
  if (has_validator(opt, "existing directory")) return "DIR";
  if (has_validator(opt, "existing file")) return "FILE";
  if (has_validator(opt, "existing path")) return "PATH";
  if (has_validator(opt, "file or inline JSON")) return "FILE|JSON";
  std::string type = opt->get_type_name();
  if (const size_t colon = type.find(':'); colon != std::string::npos)
    type = type.substr(colon + 1);
  if (type.size() > 2 && type.front() == '{' && type.back() == '}' &&
      type.find("->") == std::string::npos) {
    type = type.substr(1, type.size() - 2);
    std::replace(type.begin(), type.end(), ',', '|');
  }
  if (type == "INT" || type == "UINT") return "N";
  if (type == "FLOAT") return "NUMBER";
  if (type == "TEXT") return "VALUE";
  return type;
}

class PlainFormatter : public CLI::Formatter {
 public:
  std::string make_option_opts(const CLI::Option* opt) const override {
    std::ostringstream out;
    if (opt->get_type_size() != 0) {
      out << " " << value_name(opt);
      if (!opt->get_default_str().empty()) out << " (default " << opt->get_default_str() << ")";
      if (opt->get_required()) out << " (required)";
    }
    if (!opt->get_envname().empty()) out << " (env " << opt->get_envname() << ")";
    return out.str();
  }
};

// Damerau-Levenshtein (optimal string alignment): insertions, deletions, substitutions and
// swaps of two neighbours each cost one.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string list_of(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  }
  return out;
}

std::vector<std::string> command_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands({})) names.push_back(sub->get_name());
  return names;
}

// The long and short option names `apps` take, as written on the command line.
std::vector<std::string> option_names(const std::vector<const CLI::App*>& apps) {
  std::vector<std::string> names;
  for (const CLI::App* app : apps) {
    for (const CLI::Option* opt : app->get_options()) {
      for (const auto& l : opt->get_lnames()) names.push_back("--" + l);
      for (const auto& s : opt->get_snames()) names.push_back("-" + s);
    }
  }
  return names;
}

const CLI::Option* find_option(const std::vector<const CLI::App*>& apps, const std::string& name) {
  for (const CLI::App* app : apps) {
    for (const CLI::Option* opt : app->get_options()) {
      if (opt->check_name(name)) return opt;
    }
  }
  return nullptr;
}

bool is_number(std::string_view text) {
  return text.size() > 1 && text[0] == '-' &&
         text.find_first_not_of("0123456789.eE+-", 1) == std::string_view::npos;
}

}  // namespace

std::shared_ptr<CLI::Formatter> plain_formatter() { return std::make_shared<PlainFormatter>(); }

std::optional<std::string> closest(std::string_view given, const std::vector<std::string>& names) {
  std::optional<std::string> best;
  size_t best_distance = 0;
  for (const auto& name : names) {
    const size_t d = edit_distance(given, name);
    if (!best || d < best_distance) {
      best = name;
      best_distance = d;
    }
  }
  // A typo, not another word: at most a third of the name changed, and at most 3 edits.
  const size_t letters = given.size() - std::min<size_t>(given.find_first_not_of('-'), 2);
  if (letters < 3) return std::nullopt;  // "-x": every other letter is as close
  if (!best || best_distance == 0 ||
      best_distance > std::min<size_t>(3, std::max<size_t>(1, letters / 3))) {
    return std::nullopt;
  }
  return best;
}

std::vector<CLI::App*> command_path(CLI::App& root, const std::vector<std::string>& args) {
  std::vector<CLI::App*> path;
  CLI::App* app = &root;
  for (size_t at = skip_root_options(root, args); at < args.size(); ++at) {
    CLI::App* next = nullptr;
    for (CLI::App* sub : app->get_subcommands({})) {
      if (sub->check_name(args[at])) next = sub;
    }
    if (next == nullptr) break;
    path.push_back(next);
    app = next;
  }
  return path;
}

std::vector<std::string> unknown_arguments(CLI::App& root, const std::vector<std::string>& args) {
  const size_t first = skip_root_options(root, args);
  const std::vector<CLI::App*> path = command_path(root, args);
  if (first < args.size() && path.empty() && !args[first].starts_with("-")) {
    const auto names = command_names(root);
    const auto guess = closest(args[first], names);
    return {fmt::format("unknown command '{}'{} the commands are {}", args[first],
                        guess ? fmt::format("; did you mean '{}'?", *guess) : ":", list_of(names))};
  }
  if (path.empty()) return {};
  std::vector<const CLI::App*> apps = {&root};
  for (const CLI::App* app : path) apps.push_back(app);
  const CLI::App* leaf = path.back();
  const auto leaf_options = leaf->get_options();
  const auto num_positionals = static_cast<size_t>(std::count_if(
      leaf_options.begin(), leaf_options.end(),
      [](const CLI::Option* o) { return o->get_lnames().empty() && o->get_snames().empty(); }));
  std::vector<std::string> problems;
  size_t positionals = 0;
  const auto full_name = [&] {
    std::string name;
    for (const CLI::App* app : path) name += (name.empty() ? "" : " ") + app->get_name();
    return name;
  };
  for (size_t at = first + path.size(); at < args.size(); ++at) {
    const std::string& arg = args[at];
    if (arg == "--") break;
    if (arg.starts_with("-") && !is_number(arg)) {
      const std::string name = arg.substr(0, arg.find('='));
      const CLI::Option* opt = find_option(apps, name);
      if (opt == nullptr) {
        const auto guess = closest(name, option_names(apps));
        problems.push_back(
            guess ? fmt::format("unknown option '{}'; did you mean '{}'?", name, *guess)
                  : fmt::format("unknown option '{}' ('eplb-rebalance {} --help' lists the "
                                "options)",
                                name, full_name()));
        // Its value, if it has one, is not a positional argument of its own.
        if (arg.find('=') == std::string::npos && at + 1 < args.size() &&
            !args[at + 1].starts_with("-")) {
          ++at;
        }
      } else if (opt->get_expected_min() > 0 && arg.find('=') == std::string::npos) {
        ++at;  // its value
      }
    } else if (++positionals > num_positionals) {
      problems.push_back(
          num_positionals == 0
              ? fmt::format("unexpected argument '{}': {} takes options only", arg, full_name())
              : fmt::format("unexpected argument '{}': {} takes {} arguments", arg, full_name(),
                            num_positionals));
    }
  }
  return problems;
}

std::string describe_parse_error(const CLI::ParseError& e, const CLI::App& root,
                                 const std::vector<CLI::App*>& path) {
  const std::string what = e.what();
  const auto name_of = [&](std::string_view separator) {
    return what.substr(0, what.find(separator));
  };
  if (dynamic_cast<const CLI::ConversionError*>(&e) != nullptr) {
    constexpr std::string_view kPrefix = "The value ", kMiddle = " is not an allowed value for ";
    const size_t middle = what.find(kMiddle);
    if (what.starts_with(kPrefix) && middle != std::string::npos) {
      return fmt::format("{}: '{}' is not a valid value", what.substr(middle + kMiddle.size()),
                         what.substr(kPrefix.size(), middle - kPrefix.size()));
    }
  }
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr &&
      what.find(" missing") != std::string::npos) {
    return fmt::format("{} needs a value", name_of(": "));
  }
  if (what == "A subcommand is required") {
    const CLI::App& parent = path.empty() ? root : *path.back();
    return path.empty()
               ? fmt::format("no command given: the commands are {}", list_of(command_names(root)))
               : fmt::format("'{}' needs a subcommand: {}", parent.get_name(),
                             list_of(command_names(parent)));
  }
  return what;
}

}  // namespace eplb::app
