// A report's figures reduced over ranks, each named where it is given: whatever their
// number, one all_sum and one all_max (a minimum travels negated, inside this class only),
// instead of vectors whose positions the caller must keep in step.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <string_view>
#include <type_traits>
#include <vector>

#include "eplb/runtime/mpi.hpp"

namespace eplb::job {

class RankFigures {
 public:
  // Local: registers one figure: `out` receives, in reduce(), the sum, maximum or minimum
  // over ranks of this rank's `local`. `out` must outlive reduce(). Seconds travel in
  // microseconds.
  template <std::integral T>
  void sum(T& out, std::type_identity_t<T> local) {
    sums_.push_back(static_cast<long long>(local));
    set_sum_.emplace_back([&out](long long v) { out = static_cast<T>(v); });
  }
  template <std::integral T>
  void max(T& out, std::type_identity_t<T> local) {
    maxes_.push_back(static_cast<long long>(local));
    set_max_.emplace_back([&out](long long v) { out = static_cast<T>(v); });
  }
  template <std::integral T>
  void min(T& out, std::type_identity_t<T> local) {
    maxes_.push_back(-static_cast<long long>(local));
    set_max_.emplace_back([&out](long long v) { out = static_cast<T>(-v); });
  }
  void max_seconds(double& out, double local);
  void min_seconds(double& out, double local);

  // Collective over `group`: every rank must have registered the same figures in the same
  // order (the same code path). Fills every `out`; `phase` names the reduction in a
  // timeout's message.
  void reduce(const runtime::Group& group, std::string_view phase);

 private:
  std::vector<long long> sums_, maxes_;
  std::vector<std::function<void(long long)>> set_sum_, set_max_;
};

}  // namespace eplb::job
