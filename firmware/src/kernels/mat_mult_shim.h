// Forced (-include) into each image's copy of pico-tflmicro's arm_nn_mat_mult_nt_t_s8.c
// (firmware/CMakeLists.txt): the image's shim for the file's "reset core 1, launch the worker on core
// 1, wait for its result in the FIFO".
#if defined(PICOTFLM_CORES) && PICOTFLM_CORES == 2
#include "pk_core1_shim.h"
#else
#include "single_core_shim.h"
#endif
