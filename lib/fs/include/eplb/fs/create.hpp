// Creating a file without following or replacing anything planted at its name: O_CREAT |
// O_EXCL | O_NOFOLLOW, relative to a directory descriptor the caller checked (or to the
// working directory). Local.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <filesystem>

#include "eplb/core/fd.hpp"

namespace eplb::fs {

// The new file, or the errno of a failed creation (EEXIST also for a symbolic link or
// anything else already at the name).
struct Created {
  core::Fd fd;
  int error = 0;
};

// Creates the regular file `name` in the directory `dir_fd` (AT_FDCWD: relative to the
// working directory, or `name` absolute), opened with `flags` (O_WRONLY or O_RDWR, plus
// e.g. O_DIRECT) | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY and `mode` (less
// the umask). Never throws.
Created try_create_new_file(int dir_fd, const std::filesystem::path& name, int flags,
                            mode_t mode) noexcept;
// As try_create_new_file; throws core::Error(kIo) "cannot create 'NAME': the file already
// exists" or "cannot create 'NAME': <errno text>".
core::Fd create_new_file(int dir_fd, const std::filesystem::path& name, int flags, mode_t mode);

}  // namespace eplb::fs
