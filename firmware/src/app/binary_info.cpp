// What `picotool info` shows about the image: the model it carries and how it was built.
#include "app/build_info.h"
#include "model_config.h"
#include "model_data.h"
#include "pico/binary_info.h"

bi_decl(bi_program_description("picotflm: " PICOTFLM_MODEL_NAME " (model " PICOTFLM_MODEL_HASH ") on TFLM, "
                               PICOTFLM_IMAGE_NAME " image"));
bi_decl(bi_program_version_string(PICOTFLM_FW_VERSION));
bi_decl(bi_program_feature("model " PICOTFLM_MODEL_NAME " sha256 " PICOTFLM_MODEL_HASH));
bi_decl(bi_program_feature(PICOTFLM_STR(PICOTFLM_VARIANT_COUNT) " model variant(s), one arena"));
bi_decl(bi_program_feature("tensor arena " PICOTFLM_STR(PICOTFLM_ARENA_SIZE) " bytes"));
#if defined(PICOTFLM_CORE1_ON_CORE0)
bi_decl(bi_program_feature("image " PICOTFLM_IMAGE_NAME ", 1 core for TFLM (core 1's jobs on core 0), "
                           PICOTFLM_KERNELS_NAME " kernels"));
#else
bi_decl(bi_program_feature("image " PICOTFLM_IMAGE_NAME ", " PICOTFLM_STR(PICOTFLM_CORES) " core(s) for TFLM, "
                           PICOTFLM_KERNELS_NAME " kernels"));
#endif
