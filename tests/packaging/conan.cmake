# packaging.conan: `conan create` of the recipe at SOURCE_DIR, for real and
# offline, with everything (Conan itself if it is not on PATH, CONAN_HOME, the
# test_package build) under WORK_DIR in the build tree:
#  - Conan 2 is the `conan` on PATH, else one pip-installed into WORK_DIR/venv;
#  - CONAN_HOME is WORK_DIR/home, with a detected default profile;
#  - the test profile gives compiler.cppstd=20 and takes xsimd/8.1.0 from the
#    system ([platform_requires]); --no-remote makes sure nothing is downloaded.
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<dir> [-DPYTHON=<python3>] [-DCMAKE=<cmake>] -P conan.cmake
# Prints "tstream-packaging-skip:" (ctest: skipped) only when there is no
# Python with pip to install Conan from.
foreach(var SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "conan.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CMAKE)
  set(CMAKE "${CMAKE_COMMAND}")
endif()
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

# A Conan 2 executable: CONAN on return.
function(conan_version exe out)
  execute_process(COMMAND "${exe}" --version OUTPUT_VARIABLE v RESULT_VARIABLE rc ERROR_QUIET)
  if(rc EQUAL 0 AND v MATCHES "Conan version ([0-9]+)\\.")
    set(${out} "${CMAKE_MATCH_1}" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
  endif()
endfunction()

set(venv "${WORK_DIR}/venv")
find_program(conan_on_path conan NO_CACHE)
set(CONAN "")
if(conan_on_path)
  conan_version("${conan_on_path}" major)
  if(major STREQUAL "2")
    set(CONAN "${conan_on_path}")
  else()
    message(STATUS "${conan_on_path} is not Conan 2; installing Conan 2 into ${venv}")
  endif()
endif()
foreach(candidate "${venv}/bin/conan" "${venv}/Scripts/conan.exe")
  if(NOT CONAN AND EXISTS "${candidate}")
    conan_version("${candidate}" major)
    if(major STREQUAL "2")
      set(CONAN "${candidate}")
    endif()
  endif()
endforeach()

if(NOT CONAN)
  if(NOT PYTHON)
    find_program(PYTHON NAMES python3 python NO_CACHE)
  endif()
  if(NOT PYTHON)
    message("tstream-packaging-skip: Conan is not installed and there is no Python to pip-install it; the Conan recipe is not tested")
    return()
  endif()
  execute_process(COMMAND "${PYTHON}" -m pip --version RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT rc EQUAL 0)
    message("tstream-packaging-skip: Conan is not installed and ${PYTHON} has no pip; the Conan recipe is not tested")
    return()
  endif()
  # A venv keeps Conan out of the system's and the user's Python.
  file(REMOVE_RECURSE "${venv}")
  execute_process(COMMAND "${PYTHON}" -m venv "${venv}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${PYTHON} -m venv ${venv} failed: install Python's venv module (Debian: python3-venv)")
  endif()
  if(EXISTS "${venv}/bin/python")
    set(venv_python "${venv}/bin/python")
  else()
    set(venv_python "${venv}/Scripts/python.exe")
  endif()
  message(STATUS "installing Conan 2 into ${venv}")
  execute_process(COMMAND "${venv_python}" -m pip install --quiet --disable-pip-version-check "conan>=2.0.9,<3"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pip install conan failed (${rc}): is PyPI reachable? Installing Conan 2 on PATH also works")
  endif()
  foreach(candidate "${venv}/bin/conan" "${venv}/Scripts/conan.exe")
    if(EXISTS "${candidate}")
      set(CONAN "${candidate}")
    endif()
  endforeach()
endif()
execute_process(COMMAND "${CONAN}" --version)

# Conan's cache, profiles and settings live in the build tree.
set(ENV{CONAN_HOME} "${WORK_DIR}/home")
run("${CONAN}" profile detect --exist-ok)

file(TO_CMAKE_PATH "${CMAKE}" cmake_exe)
file(WRITE "${WORK_DIR}/test.profile" "include(default)

[settings]
compiler.cppstd=20

[platform_requires]
xsimd/8.1.0

[conf]
tools.cmake:cmake_program=${cmake_exe}
tools.cmake.cmake_layout:test_folder=${WORK_DIR}/test_package_build
")

# Build the recipe and its test_package from scratch each time (it is small),
# and keep the cache from growing with a new revision at every run.
execute_process(COMMAND "${CONAN}" remove "tstream/*" --confirm OUTPUT_QUIET ERROR_QUIET)
file(REMOVE_RECURSE "${WORK_DIR}/test_package_build")
run("${CONAN}" create "${SOURCE_DIR}"
    --profile:host "${WORK_DIR}/test.profile" --profile:build "${WORK_DIR}/test.profile"
    --build "missing" --no-remote)
