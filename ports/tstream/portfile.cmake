# tstream: header-only, so one (release) configuration is enough.
set(VCPKG_BUILD_TYPE release)

# RELEASE: REPO and SHA512 are placeholders to fill in when the project is
# published. REF follows the version in vcpkg.json (tag v<version>); with
# SHA512 0 the first `vcpkg install` fails and prints the tarball's real hash.
vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO OWNER/tstream  # PLACEHOLDER: the GitHub <owner>/<repo>
    REF "v${VERSION}"
    SHA512 0            # PLACEHOLDER: the SHA512 of the v${VERSION} tarball
    HEAD_REF main
)

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DTSTREAM_BUILD_TESTS=OFF
        -DTSTREAM_BUILD_BENCHMARKS=OFF
        -DTSTREAM_BUILD_EXAMPLES=OFF
        -DTSTREAM_INSTALL=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/tstream)
vcpkg_fixup_pkgconfig()

# Headers only: nothing for debug/ or lib/; the license is installed below.
file(REMOVE_RECURSE
    "${CURRENT_PACKAGES_DIR}/debug"
    "${CURRENT_PACKAGES_DIR}/lib"
    "${CURRENT_PACKAGES_DIR}/share/doc"
)

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
