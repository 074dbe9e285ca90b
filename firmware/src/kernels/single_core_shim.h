// Included (mat_mult_shim.h) into a one-core image's copy of pico-tflmicro's arm_nn_mat_mult_nt_t_s8.c
// (firmware/CMakeLists.txt). That file #defines TF_LITE_PICO_MULTICORE itself and hands half of every
// int8 matrix product to core 1, which rp2040js does not emulate. Here "reset core 1, launch the
// worker on core 1, wait for its result in the FIFO" becomes "call the worker on core 0 now, keep its
// result": the same rows are computed with the same code, one half after the other, bit for bit.
#ifndef PICOTFLM_SINGLE_CORE_SHIM_H_
#define PICOTFLM_SINGLE_CORE_SHIM_H_
#include <stdint.h>

// Included in the order the source itself uses (its MAX/MIN come first), then the multicore API is
// declared before the macros below, so they replace only the calls.
#include "third_party/cmsis_nn/Include/arm_nnsupportfunctions.h"
#include "pico/stdlib.h"
#include "pico/multicore.h"

static uint32_t picotflm_core1_result;
#define multicore_reset_core1() ((void)0)
#define multicore_launch_core1(entry) (entry())
#define multicore_fifo_push_blocking(value) (picotflm_core1_result = (uint32_t)(value))
#define multicore_fifo_pop_blocking() (picotflm_core1_result)
#endif
