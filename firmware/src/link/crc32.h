// CRC-32 (IEEE 802.3, reflected, as zlib.crc32): the checksum of every reply frame.
#ifndef PICOTFLM_CRC32_H_
#define PICOTFLM_CRC32_H_
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
uint32_t ptf_crc32(uint32_t crc, const void* data, size_t len);
#ifdef __cplusplus
}
#endif
#endif
