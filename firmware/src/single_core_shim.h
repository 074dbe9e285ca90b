// Forced into pico-tflmicro's arm_nn_mat_mult_nt_t_s8.c for the emulator image only (see
// firmware/CMakeLists.txt): core 1's half of the matrix product runs on core 0, right away.
#ifndef PICOTFLM_SINGLE_CORE_SHIM_H_
#define PICOTFLM_SINGLE_CORE_SHIM_H_
#include <stdint.h>
#include "pico/multicore.h"  // declared first, so the macros below only replace the calls

static uint32_t picotflm_core1_result;
#define multicore_reset_core1() ((void)0)
#define multicore_launch_core1(entry) (entry())
#define multicore_fifo_push_blocking(value) (picotflm_core1_result = (uint32_t)(value))
#define multicore_fifo_pop_blocking() (picotflm_core1_result)
#endif
