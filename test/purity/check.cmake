# Run by ctest (test/purity/CMakeLists.txt): every probe must fail to compile because its
# header is missing, every control must compile, and no pure source may include a POSIX
# I/O header. Prints each verdict; fails naming every violation.
set(violations)
foreach(target ${PROBES})
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${target}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(rc EQUAL 0)
    list(APPEND violations "${target}: compiled, so the pure library sees a forbidden header")
  elseif(NOT out MATCHES "No such file or directory")
    list(APPEND violations "${target}: failed for another reason than a missing header:\n${out}")
  else()
    message(STATUS "ok: ${target} cannot see its header")
  endif()
endforeach()
foreach(target ${CONTROLS})
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${target}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(APPEND violations "${target}: the probe does not compile even with its dependency:\n${out}")
  else()
    message(STATUS "ok: ${target} compiles with its dependency")
  endif()
endforeach()
# POSIX I/O headers are always on the include path: scan the pure sources instead.
foreach(lib placement plan balance)
  file(GLOB_RECURSE sources ${SOURCE_DIR}/lib/${lib}/*.cpp ${SOURCE_DIR}/lib/${lib}/*.hpp)
  foreach(source ${sources})
    file(STRINGS ${source} lines REGEX "^[ \t]*#[ \t]*include")
    foreach(line ${lines})
      if(line MATCHES "<(fcntl\\.h|unistd\\.h|dirent\\.h|aio\\.h|stdio\\.h|cstdio|fstream|sys/[a-z_]+\\.h)>"
         OR line MATCHES "\"eplb/(fs|io|hf|runtime|transport|job|engine|tools)/"
         OR line MATCHES "\"eplb/core/fd\\.hpp\"")
        list(APPEND violations "${source}: ${line} (a pure library does no file I/O of its own)")
      endif()
    endforeach()
  endforeach()
endforeach()
if(violations)
  list(JOIN violations "\n" text)
  message(FATAL_ERROR "purity violations:\n${text}")
endif()
message(STATUS "pure libraries: no MPI, HDF5, CUDA, NCCL or POSIX file I/O; lib/exchange and libeplb: no MPI or HDF5")
