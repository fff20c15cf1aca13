# packaging.install: `cmake --install` of the tstream build BUILD_DIR into a
# fresh staging prefix PREFIX, then checks the files consumers rely on.
#   cmake -DBUILD_DIR=<build> -DPREFIX=<dir> [-DCONFIG=<cfg>] -P install.cmake
foreach(var BUILD_DIR PREFIX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${PREFIX}")
set(config_args)
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${config_args}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install ${BUILD_DIR} --prefix ${PREFIX} failed (${rc})")
endif()

foreach(f include/tstream/tstream.hpp include/tstream/version.hpp
          share/cmake/tstream/tstreamConfig.cmake share/cmake/tstream/tstreamConfigVersion.cmake
          share/cmake/tstream/tstreamTargets.cmake share/cmake/tstream/tstreamDependencies.cmake
          share/pkgconfig/tstream.pc share/doc/tstream/LICENSE)
  if(NOT EXISTS "${PREFIX}/${f}")
    message(FATAL_ERROR "the install is missing ${f}")
  endif()
endforeach()
message(STATUS "staged tstream in ${PREFIX}")
