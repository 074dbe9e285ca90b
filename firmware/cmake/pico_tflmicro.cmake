# TFLM through pico-tflmicro's own build (PICO_TFLMICRO_PATH, else the environment's, else
# ~/.pico-sdk/pico-tflmicro); its ~100 test and example targets are not built. Included after
# pico_sdk_init().
if (NOT DEFINED PICO_TFLMICRO_PATH)
    if (DEFINED ENV{PICO_TFLMICRO_PATH})
        set(PICO_TFLMICRO_PATH "$ENV{PICO_TFLMICRO_PATH}")
    else ()
        set(PICO_TFLMICRO_PATH "$ENV{HOME}/.pico-sdk/pico-tflmicro")
    endif ()
endif ()
if (NOT EXISTS "${PICO_TFLMICRO_PATH}/CMakeLists.txt" OR NOT EXISTS "${PICO_TFLMICRO_PATH}/src/tensorflow/lite/micro")
    message(FATAL_ERROR "pico-tflmicro not found at '${PICO_TFLMICRO_PATH}'. Set PICO_TFLMICRO_PATH to a "
                        "raspberrypi/pico-tflmicro checkout (or put it at ~/.pico-sdk/pico-tflmicro).")
endif ()

add_subdirectory(${PICO_TFLMICRO_PATH} pico-tflmicro EXCLUDE_FROM_ALL)
