# packaging.conan: `conan create` of the recipe at SOURCE_DIR (which builds
# and runs its test_package), then the conanfile.txt consumer CONSUMER_DIR
# built with CMake against the created package; for real and offline, with
# everything (Conan itself if not on PATH, CONAN_HOME, all builds) under
# WORK_DIR in the build tree:
#  - Conan (2.2 or later) is the `conan` on PATH, else one pip-installed into WORK_DIR/venv
#    (or, without Python's venv module, into WORK_DIR/pylib);
#  - CONAN_HOME is WORK_DIR/home, with a detected default profile;
#  - the test profile takes xsimd/8.1.0 from the system ([platform_requires])
#    and --no-remote makes sure nothing is downloaded.
#   cmake -DSOURCE_DIR=<repo> -DCONSUMER_DIR=<dir> -DWORK_DIR=<dir> [-DPYTHON=<python3>]
#         [-DCMAKE=<cmake>] -P conan.cmake
# Prints "tstream-packaging-skip:" (ctest: skipped) only when Conan 2 is not
# installed and there is no Python with venv or pip to install it with.
foreach(var SOURCE_DIR CONSUMER_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "conan.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CMAKE)
  set(CMAKE "${CMAKE_COMMAND}")
endif()
file(MAKE_DIRECTORY "${WORK_DIR}")
# Conan's cache, profiles and settings live in the build tree: set before
# Conan first runs (even `conan --version` creates its home).
set(ENV{CONAN_HOME} "${WORK_DIR}/home")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

# Conan 2.2 is the first with all this test uses ([platform_requires] and
# tools.cmake.cmake_layout:test_folder); the recipe itself needs 2.0.9.
set(min_conan 2.2)

# Whether <exe> runs and is a Conan 2 >= min_conan.
function(usable_conan exe out)
  execute_process(COMMAND ${exe} --version OUTPUT_VARIABLE v RESULT_VARIABLE rc ERROR_QUIET)
  set(ok FALSE)
  if(rc EQUAL 0 AND v MATCHES "Conan version ([0-9]+\\.[0-9]+(\\.[0-9]+)?)")
    set(v "${CMAKE_MATCH_1}")
    if(v VERSION_GREATER_EQUAL min_conan AND v VERSION_LESS 3)
      set(ok TRUE)
    else()
      message(STATUS "${exe} is Conan ${v}; this test needs Conan 2 >= ${min_conan}")
    endif()
  endif()
  set(${out} ${ok} PARENT_SCOPE)
endfunction()

set(CONAN "")
find_program(conan_on_path conan NO_CACHE)
if(conan_on_path)
  usable_conan("${conan_on_path}" ok)
  if(ok)
    set(CONAN "${conan_on_path}")
  endif()
endif()
# Else one installed here by an earlier run.
set(venv "${WORK_DIR}/venv")
foreach(candidate "${venv}/bin/conan" "${venv}/Scripts/conan.exe")
  if(NOT CONAN AND EXISTS "${candidate}")
    usable_conan("${candidate}" ok)
    if(ok)
      set(CONAN "${candidate}")
    endif()
  endif()
endforeach()
set(pylib "${WORK_DIR}/pylib")
if(NOT CONAN AND PYTHON AND EXISTS "${pylib}/conans/conan.py")
  set(ENV{PYTHONPATH} "${pylib}")
  set(CONAN "${PYTHON}" -m conans.conan)
endif()

if(NOT CONAN)
  if(NOT PYTHON)
    find_program(PYTHON NAMES python3 python NO_CACHE)
  endif()
  if(NOT PYTHON)
    message("tstream-packaging-skip: no Conan >= 2.2 on PATH and there is no Python to pip-install it; the Conan recipe is not tested")
    return()
  endif()
  set(pip_args install --quiet --disable-pip-version-check "conan>=${min_conan},<3")
  # A venv keeps Conan out of the system's and the user's Python...
  file(REMOVE_RECURSE "${venv}")
  execute_process(COMMAND "${PYTHON}" -m venv "${venv}" RESULT_VARIABLE venv_rc OUTPUT_QUIET ERROR_QUIET)
  set(venv_python "")
  foreach(candidate "${venv}/bin/python" "${venv}/Scripts/python.exe")
    if(venv_rc EQUAL 0 AND EXISTS "${candidate}")
      execute_process(COMMAND "${candidate}" -m pip --version RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
      if(rc EQUAL 0)
        set(venv_python "${candidate}")
      endif()
    endif()
  endforeach()
  if(venv_python)
    message(STATUS "installing Conan 2 into ${venv}")
    execute_process(COMMAND "${venv_python}" -m pip ${pip_args} RESULT_VARIABLE rc)
    foreach(candidate "${venv}/bin/conan" "${venv}/Scripts/conan.exe")
      if(EXISTS "${candidate}")
        set(CONAN "${candidate}")
      endif()
    endforeach()
  else()
    # ... else (no venv module, e.g. Debian without python3-venv) pip
    # installs it into a directory of its own, put on PYTHONPATH.
    execute_process(COMMAND "${PYTHON}" -m pip --version RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
    if(NOT rc EQUAL 0)
      message("tstream-packaging-skip: no Conan >= 2.2 on PATH and ${PYTHON} has neither venv nor pip; the Conan recipe is not tested")
      return()
    endif()
    file(REMOVE_RECURSE "${pylib}")
    message(STATUS "installing Conan 2 into ${pylib}")
    execute_process(COMMAND "${PYTHON}" -m pip ${pip_args} --target "${pylib}" RESULT_VARIABLE rc)
    set(ENV{PYTHONPATH} "${pylib}")
    set(CONAN "${PYTHON}" -m conans.conan)
  endif()
  if(NOT rc EQUAL 0 OR NOT CONAN)
    message(FATAL_ERROR "pip install conan failed (${rc}): is PyPI reachable? A Conan 2 on PATH also works")
  endif()
endif()
execute_process(COMMAND ${CONAN} --version)

if(NOT EXISTS "${WORK_DIR}/home/profiles/default")
  run(${CONAN} profile detect)
endif()

file(TO_CMAKE_PATH "${CMAKE}" cmake_exe)
set(profile "${WORK_DIR}/test.profile")
file(WRITE "${profile}" "include(default)

[platform_requires]
xsimd/8.1.0

[conf]
tools.cmake:cmake_program=${cmake_exe}
tools.cmake.cmake_layout:test_folder=${WORK_DIR}/test_package_build
")

# What docs/packaging.md shows, plus the offline profile:
#   conan create path/to/tstream -s compiler.cppstd=20 --build=missing
# and, for the consumer,
#   conan install . -s compiler.cppstd=20 --build=missing --output-folder=build
#   cmake -S . -B build -DCMAKE_TOOLCHAIN_FILE=build/conan_toolchain.cmake -DCMAKE_BUILD_TYPE=Release
set(offline --profile:host "${profile}" --profile:build "${profile}" --no-remote)

# Build the recipe and its test_package from scratch each time (it is small),
# and keep the cache from growing with a new revision at every run.
execute_process(COMMAND ${CONAN} remove "tstream/*" --confirm OUTPUT_QUIET ERROR_QUIET)
file(REMOVE_RECURSE "${WORK_DIR}/test_package_build")
run(${CONAN} create "${SOURCE_DIR}" -s compiler.cppstd=20 --build=missing ${offline})

# The consumer is copied out of the source tree first: conan install writes
# CMakeUserPresets.json next to its conanfile.txt.
set(consumer "${WORK_DIR}/consumer")
file(REMOVE_RECURSE "${consumer}" "${WORK_DIR}/main.cpp")
file(COPY "${CONSUMER_DIR}/" DESTINATION "${consumer}")
file(COPY "${CONSUMER_DIR}/../main.cpp" DESTINATION "${WORK_DIR}")  # its ../main.cpp
run(${CONAN} install "${consumer}" -s compiler.cppstd=20 --build=missing --output-folder=${consumer}/build ${offline})
run("${CMAKE}" -S "${consumer}" -B "${consumer}/build" -DCMAKE_TOOLCHAIN_FILE=${consumer}/build/conan_toolchain.cmake
    -DCMAKE_BUILD_TYPE=Release)
run("${CMAKE}" --build "${consumer}/build" --config Release)
set(exe "${consumer}/build/main")
if(NOT EXISTS "${exe}")
  set(exe "${consumer}/build/Release/main${CMAKE_EXECUTABLE_SUFFIX}")
endif()
run("${exe}")
