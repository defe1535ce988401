// One move-only owner for every C handle the tool holds (CUDA memory, streams and events,
// NCCL communicators and registrations, MPI communicators, file descriptors, HDF5 ids).
// Each owner class keeps its own constructors and accessors and holds a UniqueHandle, so
// the move, reset and release rules are written once.
#pragma once

#include <utility>

namespace eplb::core {

// Move-only owner of a handle value `T`. `Traits` says what "empty" is and how to give the
// handle back:
//   static T null() noexcept;          // the value of an empty owner (-1, nullptr, ...)
//   static void close(T value) noexcept;  // never throws; never called with null()
// T may be a small struct (a pointer and its size, a handle and its kind); it must be
// copyable and comparable with ==.
// Destruction and every reset() close the owned value, if any, exactly once. A moved-from
// owner is empty.
template <typename T, typename Traits>
class UniqueHandle {
 public:
  UniqueHandle() noexcept : value_(Traits::null()) {}
  explicit UniqueHandle(T value) noexcept : value_(value) {}
  ~UniqueHandle() { reset(); }
  UniqueHandle(UniqueHandle&& other) noexcept : value_(other.release()) {}
  UniqueHandle& operator=(UniqueHandle&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;

  const T& get() const noexcept { return value_; }
  bool empty() const noexcept { return value_ == Traits::null(); }
  explicit operator bool() const noexcept { return !empty(); }

  // Gives up ownership without closing; the owner is empty afterwards.
  [[nodiscard]] T release() noexcept { return std::exchange(value_, Traits::null()); }
  // Closes the owned value (if any) first, then owns `value`.
  void reset(T value = Traits::null()) noexcept {
    if (!empty()) Traits::close(value_);
    value_ = value;
  }

 private:
  T value_;
};

}  // namespace eplb::core
