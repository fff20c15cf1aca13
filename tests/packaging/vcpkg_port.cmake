# packaging.vcpkg_port: vcpkg cannot run in CI, so check what can drift:
#  - ports/tstream/vcpkg.json's "version" is the CMake project version;
#  - the find_package(...) and target_link_libraries(...) lines of
#    ports/tstream/usage are exactly those of the find_package consumer test
#    (tests/packaging/find_package/CMakeLists.txt), which proves they work.
#   cmake -DPORT_DIR=<ports/tstream> -DVERSION=<x.y.z> -DCONSUMER=<CMakeLists.txt> -P vcpkg_port.cmake
foreach(var PORT_DIR VERSION CONSUMER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "vcpkg_port.cmake: -D${var}=... is required")
  endif()
endforeach()
foreach(f vcpkg.json portfile.cmake usage)
  if(NOT EXISTS "${PORT_DIR}/${f}")
    message(FATAL_ERROR "${PORT_DIR}/${f} is missing")
  endif()
endforeach()

file(READ "${PORT_DIR}/vcpkg.json" manifest)
string(JSON name GET "${manifest}" name)
string(JSON port_version GET "${manifest}" version)
if(NOT name STREQUAL "tstream")
  message(FATAL_ERROR "vcpkg.json: name is '${name}', expected 'tstream'")
endif()
if(NOT port_version STREQUAL VERSION)
  message(FATAL_ERROR "vcpkg.json: version is '${port_version}' but the CMake project version is '${VERSION}'; update ports/tstream/vcpkg.json (and REF/SHA512 in portfile.cmake)")
endif()

# The lines calling find_package / target_link_libraries, stripped of
# surrounding blanks, in order.
function(cmake_lines file out)
  file(STRINGS "${file}" lines REGEX "^[ \t]*(find_package|target_link_libraries)[ \t]*\\(")
  set(result)
  foreach(line IN LISTS lines)
    string(STRIP "${line}" line)
    list(APPEND result "${line}")
  endforeach()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()
cmake_lines("${PORT_DIR}/usage" usage_lines)
cmake_lines("${CONSUMER}" consumer_lines)
if(NOT usage_lines)
  message(FATAL_ERROR "${PORT_DIR}/usage has no find_package/target_link_libraries lines")
endif()
if(NOT usage_lines STREQUAL consumer_lines)
  string(REPLACE ";" "\n  " u "${usage_lines}")
  string(REPLACE ";" "\n  " c "${consumer_lines}")
  message(FATAL_ERROR "ports/tstream/usage and the find_package consumer disagree.\nusage:\n  ${u}\nconsumer (${CONSUMER}):\n  ${c}")
endif()
string(REPLACE ";" " | " u "${usage_lines}")
message(STATUS "vcpkg port ${name} ${port_version}: usage matches the tested consumer: ${u}")
