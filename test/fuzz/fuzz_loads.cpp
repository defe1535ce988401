// libFuzzer target for the load statistics reader of `balance --load` (lib/balance
// load.cpp): a bare array of loads ([layers][experts] or [steps][layers][experts]) or
// SGLang's {"logical_count": ...}, per logical expert or per physical slot. Built only with
// clang and -DEPLB_FUZZ=ON (test/fuzz/README.md).
//
// The first byte picks the options: bits 0-1 the form (auto, logical, physical), bit 2
// whether an old placement is given (2 layers, 6 slots on 2 EP ranks, 4 logical experts,
// the first layer not the identity). The rest is the file. Bad content must end in
// core::Error(kInput), or kUsage where the form cannot be told (or is told wrongly) and
// --load-form decides; any other exception, a crash, a sanitizer report or a hang is a
// finding. Every accepted file must give a rectangular grid of finite loads >= 0, with the
// old placement's expert count when it was folded through it.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "eplb/balance/load.hpp"
#include "eplb/core/error.hpp"

namespace {

namespace bal = eplb::balance;

void require(bool condition) {
  if (!condition) std::abort();
}

const eplb::placement::Placement& old_placement() {
  static const eplb::placement::Placement p = [] {
    eplb::placement::Placement out;
    out.ep_size = 2;
    out.num_slots_per_rank = 3;
    out.num_logical_experts = 4;
    out.physical_to_logical_map = {{2, 0, 1, 3, 0, 2}, {0, 1, 2, 3, 1, 0}};
    return out;
  }();
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  bal::LoadOptions options;
  options.source_name = "fuzz";
  const int form = data[0] & 3;
  if (form == 3) return 0;
  options.form = form == 0 ? bal::LoadForm::kAuto
                           : (form == 1 ? bal::LoadForm::kLogical : bal::LoadForm::kPhysical);
  const bool with_old = (data[0] & 4) != 0;
  if (with_old) options.old_placement = &old_placement();
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const bal::ParsedLoads parsed = bal::parse_loads(text, options);
    const bal::Loads& loads = parsed.loads;
    require(loads.num_logical_experts >= 1 && loads.num_layers() >= 1);
    for (const auto& layer : loads.per_layer) {
      require(layer.size() == static_cast<size_t>(loads.num_logical_experts));
      for (double v : layer) require(std::isfinite(v) && v >= 0);
    }
    // Folded through the old placement: its expert count. (Its layer count is checked by
    // `balance` against the loads', with a message of its own, not here.)
    if (parsed.form.find("per physical slot") != std::string::npos) {
      require(with_old && loads.num_logical_experts == 4);
    }
    require(!parsed.form.empty());
  } catch (const eplb::core::Error& error) {
    require(error.kind() == eplb::core::ErrorKind::kInput ||
            error.kind() == eplb::core::ErrorKind::kUsage);
  }
  return 0;
}
