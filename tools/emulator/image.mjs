// Firmware images for the emulated RP2040: ELF, UF2 or a raw flash .bin, as a list of
// { addr, data } segments at physical (load) addresses, and booting them without a bootrom.

export const FLASH_BASE = 0x10000000;
export const FLASH_SIZE = 16 * 1024 * 1024;
export const SRAM_BASE = 0x20000000;
export const SRAM_SIZE = 264 * 1024;
export const VECTOR_TABLE = FLASH_BASE + 0x100; // after the 256-byte boot2
export const UF2_FAMILY_RP2040 = 0xe48bff56;

const UF2_MAGIC0 = 0x0a324655; // "UF2\n"
const UF2_MAGIC1 = 0x9e5d5157;
const UF2_MAGIC_END = 0x0ab16f30;
const UF2_FLAG_NOT_MAIN_FLASH = 0x00000001;
const UF2_FLAG_FAMILY = 0x00002000;
const UF2_FAMILIES = {
  0xe48bff56: 'RP2040',
  0xe48bff57: 'RP2XXX absolute',
  0xe48bff58: 'RP2XXX data',
  0xe48bff59: 'RP2350 ARM-S',
  0xe48bff5a: 'RP2350 RISC-V',
  0xe48bff5b: 'RP2350 ARM-NS',
};

export class ImageError extends Error {}

/** What kind of image `bytes` is: 'elf', 'uf2' or 'bin' (by content; .bin has no magic). */
export function detectFormat(name, bytes) {
  if (bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) {
    return 'elf';
  }
  if (bytes.length >= 512) {
    const v = view(bytes);
    if (v.getUint32(0, true) === UF2_MAGIC0 && v.getUint32(4, true) === UF2_MAGIC1) return 'uf2';
  }
  if (/\.bin$/i.test(name) || looksLikeFlashBin(bytes)) return 'bin';
  throw new ImageError('not an ELF, UF2 or flash .bin image');
}

/** A raw flash image has a vector table at 0x100: an SRAM stack pointer and a Thumb reset handler in flash. */
export function looksLikeFlashBin(bytes) {
  if (bytes.length < 0x108) return false;
  const v = view(bytes);
  const sp = v.getUint32(0x100, true);
  const pc = v.getUint32(0x104, true);
  return sp > SRAM_BASE && sp <= SRAM_BASE + SRAM_SIZE && (pc & 1) === 1 && pc > FLASH_BASE && pc < FLASH_BASE + bytes.length;
}

export function loadImage(name, bytes) {
  const format = detectFormat(name, bytes);
  const segments = format === 'elf' ? elfSegments(bytes) : format === 'uf2' ? uf2Segments(bytes) : [{ addr: FLASH_BASE, data: bytes }];
  if (segments.length === 0) throw new ImageError(`no loadable data in the ${format.toUpperCase()} image`);
  const flash = segments.filter((s) => inFlash(s.addr, s.data.length));
  const ram = segments.filter((s) => inSram(s.addr, s.data.length));
  const other = segments.filter((s) => !inFlash(s.addr, s.data.length) && !inSram(s.addr, s.data.length));
  if (other.length) {
    const s = other[0];
    throw new ImageError(
      `data at 0x${s.addr.toString(16)} (${s.data.length} bytes) is neither in flash nor in SRAM`,
    );
  }
  if (flash.length === 0) {
    throw new ImageError('nothing to put in flash (a no_flash / RAM-only image cannot boot without a bootrom)');
  }
  const flashBytes = flash.reduce((n, s) => n + s.data.length, 0);
  const ramBytes = ram.reduce((n, s) => n + s.data.length, 0);
  const summary = `${flashBytes} bytes of flash in ${flash.length} segment(s)` + (ramBytes ? `, ${ramBytes} bytes of SRAM` : '');
  return { format, segments, summary };
}

/** Puts the segments into the emulated chip and points the core at the image's vector table. */
export function bootImage(mcu, image) {
  for (const { addr, data } of image.segments) {
    if (inFlash(addr, data.length)) mcu.flash.set(data, addr - FLASH_BASE);
    else mcu.sram.set(data, addr - SRAM_BASE);
  }
  const v = mcu.flashView;
  const sp = v.getUint32(VECTOR_TABLE - FLASH_BASE, true);
  const pc = v.getUint32(VECTOR_TABLE - FLASH_BASE + 4, true);
  if (!(sp > SRAM_BASE && sp <= SRAM_BASE + SRAM_SIZE && pc >= FLASH_BASE && pc < FLASH_BASE + FLASH_SIZE && (pc & 1))) {
    throw new ImageError(
      `no vector table at 0x${VECTOR_TABLE.toString(16)} (SP 0x${sp.toString(16)}, reset 0x${pc.toString(16)}): ` +
        'expected a Pico SDK flash image (boot2 + vectors)',
    );
  }
  const { core } = mcu;
  core.VTOR = VECTOR_TABLE;
  core.SP = sp;
  core.PC = pc & ~1;
  return { sp, pc };
}

function inFlash(addr, len) {
  return addr >= FLASH_BASE && addr + len <= FLASH_BASE + FLASH_SIZE;
}

function inSram(addr, len) {
  return addr >= SRAM_BASE && addr + len <= SRAM_BASE + SRAM_SIZE;
}

function view(bytes) {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** PT_LOAD program headers, at their physical (load) addresses: .data's initial values live in flash. */
export function elfSegments(bytes) {
  const v = view(bytes);
  if (bytes.length < 52) throw new ImageError('truncated ELF header');
  if (bytes[4] !== 1) throw new ImageError('not a 32-bit ELF (the RP2040 is a 32-bit Arm)');
  if (bytes[5] !== 1) throw new ImageError('not a little-endian ELF');
  const machine = v.getUint16(18, true);
  if (machine !== 40) throw new ImageError(`ELF for machine ${machine}, not Arm (40)`);
  const phoff = v.getUint32(28, true);
  const phentsize = v.getUint16(42, true);
  const phnum = v.getUint16(44, true);
  if (phnum === 0) throw new ImageError('ELF without program headers');
  if (phentsize < 32 || phoff + phnum * phentsize > bytes.length) throw new ImageError('truncated ELF program headers');
  const segments = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    const type = v.getUint32(o, true);
    const offset = v.getUint32(o + 4, true);
    const paddr = v.getUint32(o + 12, true);
    const filesz = v.getUint32(o + 16, true);
    if (type !== 1 || filesz === 0) continue; // PT_LOAD with bytes in the file
    if (offset + filesz > bytes.length) throw new ImageError(`ELF segment ${i} runs past the end of the file`);
    segments.push({ addr: paddr, data: bytes.subarray(offset, offset + filesz) });
  }
  return segments;
}

/** UF2 blocks for the RP2040's main flash (other families and non-flash blocks are skipped). */
export function uf2Segments(bytes) {
  if (bytes.length % 512 !== 0) throw new ImageError(`UF2 size ${bytes.length} is not a multiple of 512`);
  const v = view(bytes);
  const segments = [];
  const skipped = new Set();
  for (let o = 0; o < bytes.length; o += 512) {
    if (v.getUint32(o, true) !== UF2_MAGIC0 || v.getUint32(o + 4, true) !== UF2_MAGIC1 ||
        v.getUint32(o + 508, true) !== UF2_MAGIC_END) {
      throw new ImageError(`bad UF2 block magic at offset ${o}`);
    }
    const flags = v.getUint32(o + 8, true);
    const addr = v.getUint32(o + 12, true);
    const size = v.getUint32(o + 16, true);
    const family = v.getUint32(o + 28, true);
    if (flags & UF2_FLAG_NOT_MAIN_FLASH) continue;
    if (flags & UF2_FLAG_FAMILY && family !== UF2_FAMILY_RP2040) {
      skipped.add(UF2_FAMILIES[family] ?? `0x${family.toString(16)}`);
      continue;
    }
    if (size > 476) throw new ImageError(`UF2 block at offset ${o} has payload size ${size} > 476`);
    segments.push({ addr, data: bytes.subarray(o + 32, o + 32 + size) });
  }
  if (segments.length === 0 && skipped.size) {
    throw new ImageError(`UF2 has no RP2040 blocks (families: ${[...skipped].join(', ')})`);
  }
  return segments;
}

// ------------------------------------------------------------------------- board mode (board.mjs)
export const BOOT2_SIZE = 256;
export const BOOT2_RAM = SRAM_BASE + SRAM_SIZE - BOOT2_SIZE; // 0x20041f00, where the ROM copies boot2

/** CRC-32 as the RP2040 ROM checks boot2 (polynomial 0x04c11db7, MSB first, init 0xffffffff, no final xor). */
export function boot2Crc(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b << 24;
    for (let i = 0; i < 8; i++) crc = crc & 0x80000000 ? (crc << 1) ^ 0x04c11db7 : crc << 1;
  }
  return crc >>> 0;
}

/**
 * Lays an image into flash as a Pico holds it (boot2 in its first 256 bytes, the vector table after it),
 * without touching any core. Returns { crcOk, crc, stored } for the boot2 found at the start of flash.
 * RAM-only segments are refused: the ROM's flash boot never loads them.
 */
export function layFlash(mcu, image) {
  for (const { addr, data } of image.segments) {
    if (!inFlash(addr, data.length)) {
      throw new ImageError(`data at 0x${addr.toString(16)} (${data.length} bytes) is not in flash: ` +
        'a flashed Pico only holds what is in flash');
    }
    mcu.flash.set(data, addr - FLASH_BASE);
  }
  const boot2 = mcu.flash.subarray(0, BOOT2_SIZE);
  const crc = boot2Crc(boot2.subarray(0, BOOT2_SIZE - 4));
  const stored = view(boot2).getUint32(BOOT2_SIZE - 4, true);
  return { crcOk: crc === stored, crc, stored };
}
