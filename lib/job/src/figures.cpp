// Report figures reduced over ranks (eplb/job/figures.hpp).
#include "eplb/job/figures.hpp"

#include <cmath>
#include <string>

namespace eplb::job {
namespace {

long long micros(double seconds) { return std::llround(seconds * 1e6); }
double seconds(long long micros) { return static_cast<double>(micros) / 1e6; }

}  // namespace

void RankFigures::max_seconds(double& out, double local) {
  maxes_.push_back(micros(local));
  set_max_.emplace_back([&out](long long v) { out = seconds(v); });
}

void RankFigures::min_seconds(double& out, double local) {
  maxes_.push_back(-micros(local));
  set_max_.emplace_back([&out](long long v) { out = seconds(-v); });
}

void RankFigures::reduce(const runtime::Group& group, std::string_view phase) {
  // NOTE: every rank registered the same figures, so every rank makes the same calls.
  if (!sums_.empty()) {
    const auto totals = runtime::all_sum(group, sums_, phase);
    for (size_t i = 0; i < totals.size(); ++i) set_sum_[i](totals[i]);
  }
  if (!maxes_.empty()) {
    const auto largest = runtime::all_max(group, maxes_, phase);
    for (size_t i = 0; i < largest.size(); ++i) set_max_[i](largest[i]);
  }
}

}  // namespace eplb::job
