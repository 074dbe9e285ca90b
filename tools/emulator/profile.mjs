// Where the emulated cores spend their cycles: the cycles of every executed instruction, summed by its
// address (flash and SRAM), per core. Opt-in (board.mjs: PICOTFLM_EMU_PROFILE names the file a SIGUSR2
// writes the sums to), so the emulator's hot loop pays one null check when it is off.
import { renameSync, writeFileSync } from 'node:fs';

const FLASH_BASE = 0x10000000;
const FLASH_SPAN = 16 * 1024 * 1024;
const SRAM_BASE = 0x20000000;
const SRAM_SPAN = 0x42000;

export class PcProfile {
  constructor() {
    // One counter per halfword (Thumb instructions are 2-byte aligned); doubles never wrap.
    this.flash = [new Float64Array(FLASH_SPAN / 2), new Float64Array(FLASH_SPAN / 2)];
    this.sram = [new Float64Array(SRAM_SPAN / 2), new Float64Array(SRAM_SPAN / 2)];
    this.other = [0, 0];
    this.seq = 0;
  }

  add(core, pc, cycles) {
    const f = pc - FLASH_BASE;
    if (f >= 0 && f < FLASH_SPAN) this.flash[core][f >>> 1] += cycles;
    else if (pc >= SRAM_BASE && pc < SRAM_BASE + SRAM_SPAN) this.sram[core][(pc - SRAM_BASE) >>> 1] += cycles;
    else this.other[core] += cycles;
  }

  /** The sums so far, as {seq, cores: [{other, pcs: [[address, cycles], ...]}, ...]} (non-zero only). */
  snapshot() {
    this.seq++;
    const cores = [0, 1].map((core) => {
      const pcs = [];
      for (const [base, sums] of [[FLASH_BASE, this.flash[core]], [SRAM_BASE, this.sram[core]]]) {
        for (let i = 0; i < sums.length; i++) if (sums[i] !== 0) pcs.push([base + 2 * i, sums[i]]);
      }
      return { other: this.other[core], pcs };
    });
    return { seq: this.seq, cores };
  }

  /** Writes snapshot() to `path` whole (a temporary file, then a rename). */
  write(path) {
    const tmp = `${path}.tmp${process.pid}`;
    writeFileSync(tmp, JSON.stringify(this.snapshot()));
    renameSync(tmp, path);
  }
}
