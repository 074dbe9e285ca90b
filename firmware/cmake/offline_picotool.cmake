# Configuring must never need the network. Without an installed picotool the SDK clones and builds
# one from GitHub at configure time. It looks for picotool's CMake package (a bare `picotool` binary
# on PATH is not used), so look for that package the same way first (picotool_DIR points at one); when
# there is none, tell the SDK not to fetch. The image then has no .uf2; the pipeline writes it itself.
# Set PICOTOOL_FETCH_FROM_GIT_PATH to let the SDK fetch and build picotool after all.
# Included before the SDK is imported.
if (NOT DEFINED picotool_FOUND AND NOT DEFINED PICOTOOL_FETCH_FROM_GIT_PATH
        AND NOT DEFINED ENV{PICOTOOL_FETCH_FROM_GIT_PATH})
    find_package(picotool 2.1.1 QUIET CONFIG NO_CMAKE_FIND_ROOT_PATH)
    if (NOT picotool_FOUND)
        set(picotool_FOUND 0)
        message(STATUS "picotflm: no installed picotool package (set picotool_DIR to use one): no .uf2 from CMake")
    endif ()
endif ()
