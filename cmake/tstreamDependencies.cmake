# What the tstream headers need, found the same way by our own build and by
# the installed tstreamConfig.cmake. Expects `tstream_find` to be find_package
# (our build) or find_dependency (the package config).
tstream_find(xsimd 8)
# Some distributions (Debian, Ubuntu) build xsimd with xtl support, and its
# exported target then links a target `xtl` that its config does not find.
if(TARGET xsimd AND NOT TARGET xtl)
  get_target_property(_tstream_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
  if(_tstream_xsimd_links AND "xtl" IN_LIST _tstream_xsimd_links)
    tstream_find(xtl)
  endif()
  unset(_tstream_xsimd_links)
endif()
set(THREADS_PREFER_PTHREAD_FLAG ON)
tstream_find(Threads)
