// The local row copies of an exchange, on the host or on a device: what LayerExchange
// copies without the network goes through one of these, so that one exchange body serves
// host rows (memcpy) and device rows (batched kernels on a stream, next to the transfers).
#pragma once

#include <cstddef>

namespace eplb::exchange {

class Copier {
 public:
  Copier() = default;
  virtual ~Copier() = default;
  Copier(const Copier&) = delete;
  Copier& operator=(const Copier&) = delete;

  // Local: copies `bytes` from `src` to `dst` (not overlapping), or records the copy to be
  // issued by issue(). Copies recorded between two issue() calls may run in any order.
  virtual void copy(std::byte* dst, const std::byte* src, size_t bytes) = 0;
  // Local: sets `bytes` at `dst` to zero, as copy() does.
  virtual void zero(std::byte* dst, size_t bytes) = 0;
  // Local: starts the copies recorded so far (a device copier launches them on its stream
  // and returns; they run next to the transfers).
  virtual void issue() = 0;
  // Local: returns once every copy issued so far is done. Throws core::Error on failure
  // (a device copier: within its deadline).
  virtual void finish() = 0;
};

// Host memory: every copy is done when copy() returns.
class HostCopier final : public Copier {
 public:
  void copy(std::byte* dst, const std::byte* src, size_t bytes) override;
  void zero(std::byte* dst, size_t bytes) override;
  void issue() override {}
  void finish() override {}
};

}  // namespace eplb::exchange
