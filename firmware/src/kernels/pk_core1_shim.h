// Included (mat_mult_shim.h) into a two-core image's copy of pico-tflmicro's arm_nn_mat_mult_nt_t_s8.c
// (firmware/CMakeLists.txt). That file hands half of every int8 matrix product to core 1 by resetting
// core 1, launching its worker there and waiting for the worker's FIFO word: that would kill the
// worker picotflm's kernels keep on core 1 (pk_multicore.c), and the two would read each other's
// FIFO words. Here the same worker runs as a job of pk_multicore, core 1's one owner: "launch" starts
// the job, the worker's "push" keeps its result, core 0's "pop" waits for the job and returns it.
// Same rows on the same cores with the same code.
#ifndef PICOTFLM_PK_CORE1_SHIM_H_
#define PICOTFLM_PK_CORE1_SHIM_H_
#include <stdint.h>

// Included in the order the source itself uses (its MAX/MIN come first), then the multicore API is
// declared before the macros below, so they replace only the calls.
#include "third_party/cmsis_nn/Include/arm_nnsupportfunctions.h"
#include "pico/stdlib.h"
#include "pico/multicore.h"
#include "pk_multicore.h"

static volatile uint32_t picotflm_core1_result;
static void picotflm_core1_call(void* entry) { ((void (*)(void))entry)(); }
static inline uint32_t picotflm_core1_join(void) {
    pk_core1_wait();
    return picotflm_core1_result;
}
#define multicore_reset_core1() ((void)0)
#define multicore_launch_core1(entry) pk_core1_start(picotflm_core1_call, (void*)(entry))
#define multicore_fifo_push_blocking(value) (picotflm_core1_result = (uint32_t)(value))
#define multicore_fifo_pop_blocking() picotflm_core1_join()
#endif
