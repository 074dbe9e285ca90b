// How this image was built, as `picotool info` (binary_info.cpp) and the `info` reply tell it.
#ifndef PICOTFLM_APP_BUILD_INFO_H_
#define PICOTFLM_APP_BUILD_INFO_H_

#define PICOTFLM_STR_(x) #x
#define PICOTFLM_STR(x) PICOTFLM_STR_(x)

// The cores that run TFLM (build.emulate_core1: the board image's splits, core 1's jobs run on core 0).
#if defined(PICOTFLM_CORE1_ON_CORE0)
#define PICOTFLM_RUNNING_CORES 1
#else
#define PICOTFLM_RUNNING_CORES PICOTFLM_CORES
#endif

#endif  // PICOTFLM_APP_BUILD_INFO_H_
