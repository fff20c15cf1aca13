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
write_basic_package_version_file("${PROJECT_BINARY_DIR}/tstreamConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/tstreamConfig.cmake" "${PROJECT_BINARY_DIR}/tstreamConfigVersion.cmake"
              "${PROJECT_SOURCE_DIR}/cmake/tstreamDependencies.cmake"
  DESTINATION "${TSTREAM_CMAKE_DIR}")

configure_file("${PROJECT_SOURCE_DIR}/cmake/tstream.pc.in" "${PROJECT_BINARY_DIR}/tstream.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/tstream.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/tstream")
