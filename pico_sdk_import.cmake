# Finds the Raspberry Pi Pico SDK, as every Pico project does: include() this before project().
#
# Where it looks, in order: the CMake variable PICO_SDK_PATH, the environment variable
# PICO_SDK_PATH, then where the official Pico tooling installs it (~/.pico-sdk/sdk/<version>,
# the newest first). It never downloads anything.

if (NOT PICO_SDK_PATH AND DEFINED ENV{PICO_SDK_PATH})
    set(PICO_SDK_PATH "$ENV{PICO_SDK_PATH}")
endif ()

set(_picotflm_sdk_tried "")
if (NOT PICO_SDK_PATH)
    if (WIN32)
        set(_picotflm_home "$ENV{USERPROFILE}")
    else ()
        set(_picotflm_home "$ENV{HOME}")
    endif ()
    file(GLOB _picotflm_sdks LIST_DIRECTORIES true "${_picotflm_home}/.pico-sdk/sdk/*")
    list(SORT _picotflm_sdks COMPARE NATURAL ORDER DESCENDING)
    foreach (_candidate IN LISTS _picotflm_sdks)
        if (EXISTS "${_candidate}/pico_sdk_init.cmake")
            set(PICO_SDK_PATH "${_candidate}")
            break ()
        endif ()
    endforeach ()
    set(_picotflm_sdk_tried "${_picotflm_home}/.pico-sdk/sdk/<version>")
endif ()

if (NOT PICO_SDK_PATH)
    message(FATAL_ERROR
        "Pico SDK not found (looked at PICO_SDK_PATH and ${_picotflm_sdk_tried}). "
        "Set PICO_SDK_PATH to a Pico SDK 2.x checkout, e.g. `export PICO_SDK_PATH=~/pico-sdk`.")
endif ()

get_filename_component(PICO_SDK_PATH "${PICO_SDK_PATH}" REALPATH BASE_DIR "${CMAKE_BINARY_DIR}")
if (NOT EXISTS "${PICO_SDK_PATH}/pico_sdk_init.cmake")
    message(FATAL_ERROR
        "PICO_SDK_PATH is ${PICO_SDK_PATH}, but that folder has no pico_sdk_init.cmake: it is not a Pico SDK. "
        "Point PICO_SDK_PATH at the root of a Pico SDK 2.x checkout.")
endif ()

set(PICO_SDK_PATH "${PICO_SDK_PATH}" CACHE PATH "Path to the Raspberry Pi Pico SDK" FORCE)
include("${PICO_SDK_PATH}/pico_sdk_init.cmake")
