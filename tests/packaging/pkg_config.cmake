# packaging.pkg_config: compiles main.cpp with nothing but the compiler and
# `pkg-config --cflags --libs tstream` (PKG_CONFIG_PATH at the staging
# prefix), runs it, and checks `pkg-config --modversion tstream`.
#   cmake -DPKG_CONFIG=<pkg-config> -DCXX=<c++> -DPREFIX=<stage> -DSOURCE=<main.cpp>
#         -DWORK_DIR=<dir> -DVERSION=<project version> -P pkg_config.cmake
# Prints "tstream-packaging-skip:" (ctest: skipped) without pkg-config.
if(NOT PKG_CONFIG)
  message("tstream-packaging-skip: pkg-config is not installed, so the pkg-config consumer is not tested")
  return()
endif()

# The staged tstream.pc first; xsimd.pc is still found on the default path.
set(pc_dir "${PREFIX}/share/pkgconfig")
if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
  set(ENV{PKG_CONFIG_PATH} "${pc_dir}:$ENV{PKG_CONFIG_PATH}")
else()
  set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
endif()

function(pkg_config out)
  execute_process(COMMAND "${PKG_CONFIG}" ${ARGN} tstream
                  OUTPUT_VARIABLE text ERROR_VARIABLE err RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config ${ARGN} tstream failed (${rc}): ${err}")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

pkg_config(version --modversion)
if(NOT version STREQUAL VERSION)
  message(FATAL_ERROR "pkg-config --modversion tstream is '${version}', the project version is '${VERSION}'")
endif()
pkg_config(flags --cflags --libs)
message(STATUS "pkg-config --cflags --libs tstream: ${flags}")
string(FIND "${flags}" "-I${PREFIX}/" at)  # the staged headers, not some other tstream
if(at EQUAL -1)
  message(FATAL_ERROR "the include path does not point into ${PREFIX}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
separate_arguments(flags UNIX_COMMAND "${flags}")
set(exe "${WORK_DIR}/main")
message(STATUS "${CXX} ${SOURCE} ${flags} -o ${exe}")
execute_process(COMMAND "${CXX}" "${SOURCE}" ${flags} -o "${exe}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling with the pkg-config flags failed (${rc})")
endif()
execute_process(COMMAND "${exe}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${exe} failed (${rc})")
endif()
