# Finds the Raspberry Pi Pico SDK, as every Pico project does: include() this before project().
#
# Where it looks, in order: the CMake variable PICO_SDK_PATH, the environment variable PICO_SDK_PATH,
# then where the official Pico tooling (the VS Code extension) installs it: ~/.pico-sdk/sdk/2.2.0,
# else the newest other ~/.pico-sdk/sdk/<version>. It never downloads anything.

if (NOT PICO_SDK_PATH AND DEFINED ENV{PICO_SDK_PATH})
    set(PICO_SDK_PATH "$ENV{PICO_SDK_PATH}")
    set(_picotflm_sdk_from "the environment variable PICO_SDK_PATH")
elseif (PICO_SDK_PATH)
    set(_picotflm_sdk_from "the CMake variable PICO_SDK_PATH")
endif ()

if (NOT PICO_SDK_PATH)
    if (WIN32)
        file(TO_CMAKE_PATH "$ENV{USERPROFILE}" _picotflm_home)
    else ()
        set(_picotflm_home "$ENV{HOME}")
    endif ()
    set(_picotflm_sdk_root "${_picotflm_home}/.pico-sdk/sdk")
    file(GLOB _picotflm_sdks LIST_DIRECTORIES true "${_picotflm_sdk_root}/*")
    list(SORT _picotflm_sdks COMPARE NATURAL ORDER DESCENDING)
    list(REMOVE_ITEM _picotflm_sdks "${_picotflm_sdk_root}/2.2.0")
    foreach (_candidate IN ITEMS "${_picotflm_sdk_root}/2.2.0" ${_picotflm_sdks})
        if (EXISTS "${_candidate}/pico_sdk_init.cmake")
            set(PICO_SDK_PATH "${_candidate}")
            set(_picotflm_sdk_from "the default place of the Pico tooling")
            break ()
        endif ()
    endforeach ()
    if (NOT PICO_SDK_PATH)
        message(FATAL_ERROR
            "Pico SDK not found. PICO_SDK_PATH is not set (neither as a CMake variable nor in the environment), "
            "and there is no SDK at ${_picotflm_sdk_root}/2.2.0 nor in any other ${_picotflm_sdk_root}/<version>. "
            "Install Pico SDK 2.x there, or point PICO_SDK_PATH at a checkout: "
            "`export PICO_SDK_PATH=/path/to/pico-sdk` or `cmake -DPICO_SDK_PATH=/path/to/pico-sdk ...`.")
    endif ()
endif ()

get_filename_component(PICO_SDK_PATH "${PICO_SDK_PATH}" REALPATH BASE_DIR "${CMAKE_BINARY_DIR}")
if (NOT EXISTS "${PICO_SDK_PATH}/pico_sdk_init.cmake")
    message(FATAL_ERROR
        "PICO_SDK_PATH (from ${_picotflm_sdk_from}) is ${PICO_SDK_PATH}, but that folder has no "
        "pico_sdk_init.cmake: it is not a Pico SDK. Point PICO_SDK_PATH at the root of a Pico SDK 2.x checkout.")
endif ()

message(STATUS "picotflm: Pico SDK at ${PICO_SDK_PATH} (from ${_picotflm_sdk_from})")
set(PICO_SDK_PATH "${PICO_SDK_PATH}" CACHE PATH "Path to the Raspberry Pi Pico SDK" FORCE)
include("${PICO_SDK_PATH}/pico_sdk_init.cmake")
