# Conan 2 recipe for tstream (header-only), after conan-center-index's
# header-only template. The version comes from CMakeLists.txt, the project's
# single source of truth; package() runs the project's own CMake install, so
# the generated <tstream/version.hpp> is packaged too.
#
#   conan create . -pr:h <profile with compiler.cppstd=20 (or gnu20)>
#
# tests/packaging/conan.cmake runs exactly that, offline (ctest -L packaging).
import os
import re

from conan import ConanFile
from conan.errors import ConanException, ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rmdir
from conan.tools.scm import Version

required_conan_version = ">=2.0.9"


class TstreamConan(ConanFile):
    name = "tstream"
    description = "Header-only C++20 kernels that model Groq's Tensor Streaming Processor on CPUs"
    license = "Apache-2.0"
    url = "https://example.invalid/tstream"
    homepage = "https://example.invalid/tstream"
    topics = ("simd", "streaming", "kernels", "llm", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "CMakeLists.txt", "LICENSE", "cmake/*", "include/*"
    no_copy_source = True

    @property
    def _min_cppstd(self):
        return 20

    @property
    def _compilers_minimum_version(self):
        # C++20 with concepts, <span> and std::bit_cast.
        return {"gcc": "11", "clang": "14", "apple-clang": "14", "msvc": "192"}

    def set_version(self):
        if self.version:
            return
        cmakelists = load(self, os.path.join(self.recipe_folder, "CMakeLists.txt"))
        match = re.search(r"project\(\s*tstream\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+)", cmakelists)
        if not match:
            raise ConanException("tstream: no project(tstream VERSION x.y.z) in CMakeLists.txt")
        self.version = match.group(1)

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # The public headers include xsimd's.
        self.requires("xsimd/8.1.0", transitive_headers=True)

    def package_id(self):
        self.info.clear()

    def validate(self):
        if self.settings.compiler.get_safe("cppstd"):
            check_min_cppstd(self, self._min_cppstd)
        minimum_version = self._compilers_minimum_version.get(str(self.settings.compiler), False)
        if minimum_version and Version(self.settings.compiler.version) < minimum_version:
            raise ConanInvalidConfiguration(
                f"{self.ref} requires C++{self._min_cppstd}, which {self.settings.compiler} "
                f"{self.settings.compiler.version} does not support.")

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["TSTREAM_BUILD_TESTS"] = False
        tc.cache_variables["TSTREAM_BUILD_BENCHMARKS"] = False
        tc.cache_variables["TSTREAM_BUILD_EXAMPLES"] = False
        tc.cache_variables["TSTREAM_INSTALL"] = True
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        pass  # headers only

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.configure()
        cmake.install()
        # Consumers get CMake and pkg-config files from CMakeDeps / PkgConfigDeps.
        rmdir(self, os.path.join(self.package_folder, "share"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "tstream")
        self.cpp_info.set_property("cmake_target_name", "tstream::tstream")
        self.cpp_info.set_property("pkg_config_name", "tstream")
        if self.settings.os in ["Linux", "FreeBSD"]:
            self.cpp_info.system_libs = ["pthread"]
