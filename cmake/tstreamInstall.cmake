# Install and export rules: headers, tstream::tstream, the package
# configuration files and a pkg-config file.
include(CMakePackageConfigHelpers)

set(TSTREAM_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/tstream")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/tstream" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(FILES "${PROJECT_BINARY_DIR}/generated/tstream/version.hpp" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/tstream")
install(TARGETS tstream EXPORT tstreamTargets)
install(EXPORT tstreamTargets NAMESPACE tstream:: DESTINATION "${TSTREAM_CMAKE_DIR}")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/tstreamConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/tstreamConfig.cmake" INSTALL_DESTINATION "${TSTREAM_CMAKE_DIR}")
# Semantic versioning: before 1.0 a minor release may break the API, so
# find_package(tstream 0.1) must not accept 0.2; from 1.0 on the major decides.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_tstream_compatibility SameMinorVersion)
else()
  set(_tstream_compatibility SameMajorVersion)
endif()
write_basic_package_version_file("${PROJECT_BINARY_DIR}/tstreamConfigVersion.cmake"
  COMPATIBILITY ${_tstream_compatibility} ARCH_INDEPENDENT)
unset(_tstream_compatibility)
install(FILES "${PROJECT_BINARY_DIR}/tstreamConfig.cmake" "${PROJECT_BINARY_DIR}/tstreamConfigVersion.cmake"
              "${PROJECT_SOURCE_DIR}/cmake/tstreamDependencies.cmake"
  DESTINATION "${TSTREAM_CMAKE_DIR}")

# tstream.pc finds its prefix from its own location (${pcfiledir}), so that
# `cmake --install --prefix <dir>`, DESTDIR and a moved install all work; it
# is arch-independent (headers only), hence share/pkgconfig.
set(_tstream_pc_dir "${CMAKE_INSTALL_DATADIR}/pkgconfig")
if(IS_ABSOLUTE "${_tstream_pc_dir}")
  set(TSTREAM_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _tstream_up "/prefix/${_tstream_pc_dir}" "/prefix")
  string(REGEX REPLACE "/$" "" _tstream_up "${_tstream_up}")  # ../.. for share/pkgconfig
  set(TSTREAM_PC_PREFIX "\${pcfiledir}/${_tstream_up}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(TSTREAM_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(TSTREAM_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file("${PROJECT_SOURCE_DIR}/cmake/tstream.pc.in" "${PROJECT_BINARY_DIR}/tstream.pc" @ONLY)
unset(_tstream_pc_dir)
unset(_tstream_up)
install(FILES "${PROJECT_BINARY_DIR}/tstream.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/tstream")
