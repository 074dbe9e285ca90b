"""Board mode of the emulated Pico: tools/emulator/board.mjs runs the image a user flashes onto a Pico
(boot2, USB CDC stdio, both cores, the SDK's ROM mem/bit ops) on rp2040js with a ROM stand-in of our
own. Hand-assembled images and the ROM stand-in need Node only; tests/emulator/board_fw needs the Pico
SDK with tinyusb and arm-none-eabi-gcc (marker ``firmware``; skipped when absent,
PICOTFLM_REQUIRE_FIRMWARE=1 fails instead)."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.emulator._images import uf2_image
from tests.emulator.conftest import find_sdk, missing

pytestmark = pytest.mark.firmware  # every test needs Node.js with rp2040js; board_fw also the Pico SDK

BOARD_FW_SRC = Path(__file__).parent / "board_fw"
READY = "boot from vector table"


# ------------------------------------------------------------------ driving board.mjs
class Board:
    """``node board.mjs IMAGE`` with pipes: lines from the device's USB CDC serial, stderr collected."""

    def __init__(self, node_emulator: Path, image: Path, *args: str):
        self.proc = subprocess.Popen(["node", str(node_emulator / "board.mjs"), *args, str(image)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._out = bytearray()
        self._err = bytearray()
        self._cv = threading.Condition()
        for stream, buf in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            threading.Thread(target=self._pump, args=(stream, buf), daemon=True).start()

    def _pump(self, stream, buf):
        while True:
            chunk = os.read(stream.fileno(), 65536)
            with self._cv:
                if not chunk:
                    self._cv.notify_all()
                    return
                buf += chunk
                self._cv.notify_all()

    @property
    def stderr(self) -> str:
        with self._cv:
            return self._err.decode(errors="replace")

    def wait_stderr(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cv:
            while text not in self._err.decode(errors="replace"):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and text not in self._err.decode(errors="replace")):
                    pytest.fail(f"no {text!r} on stderr:\n{self._err.decode(errors='replace')}")
                self._cv.wait(min(left, 0.2))
            return self._err.decode(errors="replace")

    def readline(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cv:
            while b"\n" not in self._out:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no line from the device in {timeout} s; stderr:\n{self.stderr}")
                if self.proc.poll() is not None:
                    pytest.fail(f"board.mjs exited ({self.proc.returncode}); stderr:\n{self.stderr}")
                self._cv.wait(min(left, 0.2))
            line, _, rest = bytes(self._out).partition(b"\n")
            self._out[:] = rest
            return line.decode()

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, line: str, timeout: float = 60.0) -> str:
        self.send(line)
        return self.readline(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"board.mjs did not stop; stderr:\n{self.stderr}")

    def close(self, timeout: float = 30.0) -> int:
        """Closes stdin (the parent going away): board.mjs stops once the device is idle."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def fields(reply: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in reply.split() if "=" in kv)


# ------------------------------------------------------------------ hand-assembled images (Node only)
def boot2_crc(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


# A boot2 of our own: VTOR = 0x10000100, MSP and PC from that vector table (what the SDK's boot2 does
# last): ldr r0,=0x10000100; ldr r1,=VTOR; str r0,[r1]; ldmia r0,{r0,r1}; msr msp,r0; bx r1.
BOOT2_CODE = struct.pack("<6H", 0x4803, 0x4904, 0x6008, 0xC803, 0xF380, 0x8808) + struct.pack("<2H", 0x4708, 0) + \
    struct.pack("<II", 0x10000100, 0xE000ED08)


def board_image(code: bytes, boot2_ok: bool = True) -> bytes:
    boot2 = BOOT2_CODE.ljust(252, b"\0")
    crc = boot2_crc(boot2) ^ (0 if boot2_ok else 1)
    img = bytearray(boot2 + struct.pack("<I", crc))
    img += struct.pack("<II", 0x20042000, 0x10000109)  # vector table: SP, reset at 0x108
    img += code
    return bytes(img)


# ldr r0,[pc,#4]; blx r0; b .; (pad); .word 0x3001  -- a call to a ROM address that is not served
CALL_ROM_0x3000 = struct.pack("<4H", 0x4801, 0x4780, 0xE7FE, 0) + struct.pack("<I", 0x3001)
BKPT = struct.pack("<2H", 0xBE00, 0xE7FE)


def run_board(node_emulator, image, stdin=b"", *args, timeout=60):
    return subprocess.run(["node", str(node_emulator / "board.mjs"), *args, str(image)], input=stdin,
                          capture_output=True, timeout=timeout)


def test_image_without_valid_boot2_is_refused(tmp_path, node_emulator):
    image = tmp_path / "noboot2.bin"
    image.write_bytes(board_image(BKPT, boot2_ok=False))
    r = run_board(node_emulator, image)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "no valid boot2" in err and "run.mjs" in err


def test_bad_arguments_exit_1(tmp_path, node_emulator):
    assert run_board(node_emulator, tmp_path / "missing.uf2").returncode == 1
    r = subprocess.run(["node", str(node_emulator / "board.mjs")], capture_output=True, timeout=30)
    assert r.returncode == 1 and b"usage" in r.stderr


@pytest.mark.parametrize("fmt", ["bin", "uf2"])
def test_boot2_runs_and_an_unserved_rom_call_stops_with_exit_3(tmp_path, node_emulator, fmt):
    flash = board_image(CALL_ROM_0x3000)
    image = tmp_path / f"rom.{fmt}"
    image.write_bytes(flash if fmt == "bin" else uf2_image(flash))
    r = run_board(node_emulator, image, b"", "--cycles")
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert READY in err
    assert "call to ROM address 0x00003000, which the ROM stand-in does not serve" in err
    assert "core 0: PC 0x00003000" in err and "LR 0x1000010d" in err  # called from our code after boot2
    assert re.search(r"\d+ cycles \(", err)  # --cycles at exit, as run.mjs


def test_breakpoint_after_boot2_stops_with_exit_3(tmp_path, node_emulator):
    image = tmp_path / "bkpt.bin"
    image.write_bytes(board_image(BKPT))
    r = run_board(node_emulator, image)
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "breakpoint (BKPT/UDF 0x0) on core 0" in err and "PC 0x10000108" in err


ROM_CHECK = r"""
import { RP2040 } from 'rp2040js';
import { buildRom, RomServices, FUNCS, code } from './rom.mjs';
const mcu = new RP2040();
mcu.logger = { debug() {}, info() {}, warn() {}, error(c, m) { throw new Error(m); } };
const rom = buildRom();
mcu.bootrom.set(new Uint32Array(rom.bytes.buffer));
let stopped = null;
const ctx = {
  flash: mcu.flash, stop(msg, c) { stopped = [msg, c]; },
  mem: {
    read8: (a) => mcu.readUint8(a),
    fill(p, v, n) { for (let i = 0; i < n; i++) mcu.writeUint8(p + i, v); },
    copy(d, s, n) { for (let i = 0; i < n; i++) mcu.writeUint8(d + i, mcu.readUint8(s + i)); },
  },
};
const svc = new RomServices(mcu, rom, ctx, {});
const core = mcu.core;
const h16 = (a) => mcu.readUint16(a);
const lookupFn = h16(0x18) & ~1;
function call(addr, ...args) {
  args.forEach((v, i) => { core.registers[i] = v >>> 0; });
  core.registers[14] = 0x20001001;
  svc.serve(core, addr);
  if (core.PC !== 0x20001000) throw new Error('did not return to LR');
  return core.registers[0] >>> 0;
}
const fn = (c) => call(lookupFn, h16(0x14), code(c)) & ~1;
const out = { magic: [mcu.readUint8(0x10), mcu.readUint8(0x11), mcu.readUint8(0x12)], version: mcu.readUint8(0x13),
              codes: FUNCS.map((f) => f.code), missing: call(lookupFn, h16(0x14), code('ZZ')),
              cr: '', values: {} };
for (let a = call(lookupFn, h16(0x16), code('CR')); mcu.readUint8(a); a++) out.cr += String.fromCharCode(mcu.readUint8(a));
const vals = [0, 1, 0x80000000, 0xffffffff, 0x12345678, 0x00f00100];
for (const c of ['P3', 'L3', 'T3', 'R3']) out.values[c] = vals.map((v) => call(fn(c), v));
const S = 0x20000100;
const init = () => { for (let i = 0; i < 64; i++) mcu.writeUint8(S + i, i); };
init();
out.values.MS = [call(fn('MS'), S + 3, 0x1ab, 5) === S + 3, [...Array(10)].map((_, i) => mcu.readUint8(S + i))];
init();
out.values.S4 = [call(fn('S4'), S + 16, 0x7c, 8) === S + 16, [...Array(4)].map((_, i) => mcu.readUint32(S + 12 + 4 * i))];
init();
out.values.MC = [call(fn('MC'), S + 41, S + 1, 6) === S + 41, [...Array(8)].map((_, i) => mcu.readUint8(S + 40 + i))];
init();
out.values.C4 = [call(fn('C4'), S + 48, S, 8) === S + 48, [...Array(8)].map((_, i) => mcu.readUint8(S + 48 + i))];
for (const c of ['IF', 'EX', 'FC', 'CX']) { call(fn(c)); out.values[c] = 'returned'; }
mcu.flash.fill(0x00, 0x100000, 0x101010);
call(fn('RE'), 0x100000, 4096, 1 << 16, 0xd8);
out.values.RE = [mcu.flash[0x100000], mcu.flash[0x100fff], mcu.flash[0x101000]];
for (let i = 0; i < 256; i++) mcu.writeUint8(S + i, (i * 3) & 0xff);
mcu.flash[0x100001] = 0x0f;
call(fn('RP'), 0x100000, S, 256);
out.values.RP = [mcu.flash[0x100000], mcu.flash[0x100001], mcu.flash[0x1000ff], mcu.flash[0x100100]];
call(fn('UB'), 0, 0);
out.values.UB = stopped;
try { svc.serve(core, 0x3000); out.unserved = 'served?'; } catch (e) { out.unserved = e.message; }
out.soft = {};
for (const t of ['SF', 'SD']) {
  const table = call(lookupFn, h16(0x16), code(t));
  const fadd = mcu.readUint32(table) & ~1;
  let msg = 'served?';
  try { svc.serve(core, fadd); } catch (e) { msg = e.message; }
  out.soft[t] = { words: mcu.readUint8(table - 2), aligned: table % 4 === 0, fadd: msg,
                  distinct: new Set([...Array(32)].map((_, i) => mcu.readUint32(table + 4 * i))).size };
}
console.log(JSON.stringify(out));
"""


def test_rom_stand_in_serves_each_function(node_emulator):
    """Each served ROM function, reached through the header and the lookup function as the SDK does."""
    r = subprocess.run(["node", "--input-type=module", "-e", ROM_CHECK], cwd=node_emulator, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["magic"] == [ord("M"), ord("u"), 1] and out["version"] == 3
    assert set(out["codes"]) >= {"P3", "L3", "T3", "R3", "MS", "MC", "S4", "C4", "IF", "EX", "FC"}
    assert out["missing"] == 0  # a code the table does not have: NULL
    assert "not the Raspberry Pi bootrom" in out["cr"]
    vals = [0, 1, 0x80000000, 0xFFFFFFFF, 0x12345678, 0x00F00100]
    v = out["values"]
    assert v["P3"] == [bin(x).count("1") for x in vals]
    assert v["L3"] == [32 - x.bit_length() for x in vals]
    assert v["T3"] == [(x & -x).bit_length() - 1 if x else 32 for x in vals]
    assert v["R3"] == [int(f"{x:032b}"[::-1], 2) for x in vals]
    assert v["MS"] == [True, [0, 1, 2, 0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 8, 9]]
    assert v["S4"] == [True, [0x0F0E0D0C, 0x7C7C7C7C, 0x7C7C7C7C, 0x1B1A1918]]
    assert v["MC"] == [True, [40, 1, 2, 3, 4, 5, 6, 47]]
    assert v["C4"] == [True, [0, 1, 2, 3, 4, 5, 6, 7]]
    assert all(v[c] == "returned" for c in ("IF", "EX", "FC", "CX"))
    assert v["RE"] == [0xFF, 0xFF, 0x00]
    assert v["RP"] == [0x00, 0x03, 0xFD, 0xFF]  # programming ANDs into erased flash
    assert v["UB"][1] == 0 and "BOOTSEL" in v["UB"][0]
    assert out["unserved"] == "call to ROM address 0x00003000, which the ROM stand-in does not serve"
    # The soft float/double tables exist (the SDK copies them at start-up) but each function stops the run
    # with its name when called.
    for t, kind, name in (("SF", "float", "fadd"), ("SD", "double", "dadd")):
        soft = out["soft"][t]
        assert soft["words"] == 32 and soft["aligned"] and soft["distinct"] == 32
        assert f"soft-{kind} function {name} (table {t}" in soft["fadd"]
        assert f"pico_set_{kind}_implementation(<target> compiler)" in soft["fadd"]


CORES_CHECK = r"""
import { RP2040 } from 'rp2040js';
import { buildRom, RomServices, CORE1_EXIT } from './rom.mjs';
import { DualCore } from './cores.mjs';
const mcu = new RP2040();
mcu.logger = { debug() {}, info() {}, warn() {}, error(c, m) { throw new Error(m); } };
const rom = buildRom();
mcu.bootrom.set(new Uint32Array(rom.bytes.buffer));
let dual;
const svc = new RomServices(mcu, rom, {}, { [CORE1_EXIT]: (c) => dual.core1Exit(c) });
dual = new DualCore(mcu, rom, svc);
const SIO = 0xd0000000, ST = SIO + 0x50, WR = SIO + 0x54, RD = SIO + 0x58, PSM_OFF = 0x40010004;
const rd = (a) => mcu.readUint32(a) >>> 0, wr = (a, v) => mcu.writeUint32(a, v);
const out = {};
out.cpuid0 = rd(SIO);
out.powerUp = [rd(ST) & 1, rd(RD), rd(ST) & 1];          // core 1 pushed 0 from the ROM at power-up
mcu.setInterrupt(5, true);                                // a line asserted before core 1 runs
out.echo = [];
for (const w of [7, 0, 0, 1, 0x10000100, 0x20041000, 0x10000201]) {  // a stray word first: sequence restarts
  wr(WR, w); dual.romCore1Wait(); out.echo.push(rd(RD));
}
const c1 = dual.cores[1];
out.launched = [dual.st[1].state, c1.PC, c1.SP, c1.VTOR, c1.registers[14] & ~1, rom.addrOf(CORE1_EXIT),
                (c1.pendingInterrupts >>> 5) & 1];
dual.switchTo(1);
out.cpuid1 = rd(SIO);
wr(SIO + 0x60, 100); wr(SIO + 0x64, 7);                   // core 1: 100 / 7
wr(0xe000e014, 1234);                                     // core 1's SysTick reload
dual.switchTo(0);
wr(SIO + 0x60, 1000); wr(SIO + 0x64, 3);                  // core 0: 1000 / 3
out.div0 = rd(SIO + 0x70);
out.rvr0 = rd(0xe000e014);
dual.switchTo(1);
out.div1 = rd(SIO + 0x70);
out.rvr1 = rd(0xe000e014);
dual.switchTo(0);
for (let i = 0; i < 9; i++) wr(WR, 100 + i);              // 8 fit in core 1's FIFO, the 9th overflows
out.full = rd(ST);                                        // WOF set, RDY clear
wr(ST, 0xff);
out.cleared = rd(ST);
rd(RD); out.underflow = rd(ST) & 8;                       // a read of an empty FIFO: ROE
wr(ST, 0xff);
c1.waiting = true; dual.sev(); out.sevWakes = !c1.waiting;
wr(PSM_OFF, 1 << 16); out.held = dual.st[1].state;
wr(PSM_OFF, 0); out.reset = [dual.st[1].state, dual.st[1].rx.length, rd(ST) & 1, rd(RD), dual.cores[1] !== c1];
console.log(JSON.stringify(out));
"""


def test_core1_rom_handshake_fifo_and_per_core_state(node_emulator):
    """cores.mjs without firmware: the ROM's core-1 launch protocol, the FIFOs' flags, per-core CPUID,
    divider and SysTick, SEV, and PSM reset of core 1."""
    r = subprocess.run(["node", "--input-type=module", "-e", CORES_CHECK], cwd=node_emulator, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["cpuid0"] == 0 and out["cpuid1"] == 1
    assert out["powerUp"] == [1, 0, 0]
    assert out["echo"] == [7, 0, 0, 1, 0x10000100, 0x20041000, 0x10000201]  # every word echoed
    state, pc, sp, vtor, lr, exit_entry, pending5 = out["launched"]
    assert (state, pc, sp, vtor) == ("run", 0x10000200, 0x20041000, 0x10000100)
    assert lr == exit_entry and pending5 == 1
    assert (out["div0"], out["div1"]) == (333, 14)
    assert (out["rvr0"], out["rvr1"]) == (0, 1234)
    assert out["full"] & 0b0110 == 0b0100  # WOF, not RDY
    assert out["cleared"] & 0b1100 == 0 and out["underflow"] == 8
    assert out["sevWakes"]
    assert out["held"] == "off"
    assert out["reset"] == ["rom", 0, 1, 0, True]  # a fresh core 1 drained its FIFO and pushed 0


# ------------------------------------------------------------------ board_fw (Pico SDK + tinyusb)
def build_board_fw(tmp_path_factory, *options: str) -> dict[str, Path]:
    sdk = find_sdk()
    if sdk is None:
        missing("Pico SDK not found (set PICO_SDK_PATH or install it at ~/.pico-sdk/sdk/2.2.0)")
    if not (sdk / "lib" / "tinyusb" / "src" / "tusb.h").is_file():
        missing(f"tinyusb missing in {sdk}/lib/tinyusb (stdio_usb needs it; see FINDINGS, USB CDC)")
    for tool in ("cmake", "ninja", "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            missing(f"{tool} not installed")
    build = tmp_path_factory.mktemp("board_fw_build")
    env = dict(os.environ, PICO_SDK_PATH=str(sdk), CCACHE_NOHASHDIR="1")
    configure = ["cmake", "-G", "Ninja", "-S", str(BOARD_FW_SRC), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release", "-Dpicotool_FOUND=0", f"-DPICO_SDK_PATH={sdk}", *options]
    if shutil.which("ccache"):
        configure += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    for cmd in (configure, ["cmake", "--build", str(build)]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"board_fw build failed: {' '.join(cmd)}\n{(r.stdout + r.stderr)[-4000:]}")
    elf, binf = build / "board_fw.elf", build / "board_fw.bin"
    uf2 = build / "board_fw.uf2"
    uf2.write_bytes(uf2_image(binf.read_bytes()))
    return {"elf": elf, "bin": binf, "uf2": uf2}


@pytest.fixture(scope="module")
def board_fw(tmp_path_factory, node_emulator) -> dict[str, Path]:
    """board_fw with float and double from the compiler's library."""
    return build_board_fw(tmp_path_factory)


@pytest.fixture(scope="module")
def board(board_fw, node_emulator):
    """One board.mjs running board_fw's UF2 for the request/reply tests, in file order."""
    b = Board(node_emulator, board_fw["uf2"], "--cycles", "--verbose")
    b.wait_stderr(READY)
    yield b
    b.kill()


def test_usb_cdc_echo(board):
    assert board.request("hello board") == "1 hello board"
    long = "x" * 150 + "-" + "y" * 90  # more than one 64-byte USB packet each way
    assert board.request(long) == f"2 {long}"
    err = board.stderr
    assert "usb: CDC ready" in err
    assert "USB CDC on stdin/stdout" in err


def test_core1_launch_and_fifo_exchange(board):
    reply = board.request("core1 100")
    assert reply.startswith("3 core1 328350 ")  # sum of i*i for i < 100, computed on core 1
    f = fields(reply)
    assert f["cpuid"] == "1" and f["launches"] == "1"


def test_reset_core1_and_relaunch(board):
    reply = board.request("reset1 50")
    # multicore_reset_core1 returned (core 1 pushed its 0), nothing else was left in the FIFO, and the
    # relaunched core 1 computed sum(i*i, i < 50)
    assert reply == "4 reset1 clean=1 40425 launches=2"
    assert board.request("core1 10").startswith("5 core1 285 cpuid=1")


def test_multicore_lockout_pauses_core1(board):
    f = fields(board.request("lockout"))
    assert f == {"paused": "1", "resumed": "1", "running": "1", "done": "2"}


def test_multicore_lockout_pauses_core0(board):
    # core 1 locks core 0 out: the request reaches core 0 through SIO_IRQ_PROC0
    f = fields(board.request("lockout0"))
    assert f == {"paused": "1", "resumed": "1", "running": "1", "done": "6"}


def test_each_core_has_its_own_systick(board):
    f = fields(board.request("systick"))
    assert f["rvr0"] == "12499" and f["rvr1"] == "124999"
    assert 198 <= int(f["c0"]) <= 201  # 20 ms at 100 us on core 0
    assert 18 <= int(f["c1"]) <= 20  # about 20 ms at 1 ms on core 1


def test_hardware_divider_per_core(board):
    f = fields(board.request("div"))
    assert f["same"] == "1" and f["c0"] == f["c1"]


def test_rom_functions_from_the_firmware(board):
    reply = board.request("rom")
    f = fields(reply)
    for c in ("P3", "L3", "T3", "R3", "MS", "S4", "MC", "C4", "sdk", "IF", "EX", "FC", "CX", "RE", "RP"):
        assert f.get(c) == "ok", (c, reply)
    assert f["lookupZZ"] == "00000000" and f["version"] == "3"
    assert "ROM stand-in" in reply


def test_two_cores_halve_the_time(board):
    reply = board.request("speed 400000")
    f = fields(reply)
    assert f["equal"] == "1"
    one, two = int(f["one"]), int(f["two"])
    assert 400000 * 10 / 125 <= one <= 400000 * 20 / 125  # 10-20 cycles per iteration at 125 MHz
    assert 1.9 <= one / two <= 2.05, reply


def test_timer_interrupt_reaches_the_core_that_enabled_it(board):
    # core 1 claims a hardware alarm and enables TIMER_IRQ_n in its own NVIC: the callback runs there
    assert board.request("alarm1").endswith(" alarm1 fired=1 core=1")


def test_hardware_spinlock_is_shared_between_the_cores(board):
    # both cores add 5000 to one counter under one spinlock; the lockstep quanta split their critical
    # sections, so a lock that did not exclude the other core would lose updates
    assert board.request("spin 5000").endswith(" spin 5000 total=10000")


def test_float_from_the_compilers_library(board):
    assert board.request("float").endswith(" float 3375")


def test_emulated_time_advances(board):
    t1 = int(board.request("time").split()[-1])
    t2 = int(board.request("time").split()[-1])
    assert 0 < t1 < t2


def test_stdin_eof_stops_with_exit_0_and_cycles(board):
    n = int(board.request("last").split()[0])
    assert n >= 1
    assert board.close() == 0
    err = board.stderr
    m = re.search(r"(\d+) cycles \([\d.]+ ms emulated\).*core 1 launches (\d+), resets (\d+)", err)
    assert m, err
    assert int(m.group(2)) == 2 and int(m.group(3)) == 1
    assert "ROM calls:" in err and "P3" in err


@pytest.mark.parametrize("fmt", ["elf", "bin"])
def test_each_image_format_boots(board_fw, node_emulator, fmt):
    b = Board(node_emulator, board_fw[fmt])
    try:
        b.wait_stderr(READY)
        assert b.request("ping") == "1 ping"
        assert b.close() == 0
    finally:
        b.kill()


def test_usb_reconnect_enumerates_again(board_fw, node_emulator):
    b = Board(node_emulator, board_fw["uf2"], "--cycles", "--verbose")
    try:
        assert b.request("replug") == "1 replug"
        # A line sent before the device goes away may be lost with its buffers, as on a board: wait until
        # it has disconnected, then send while it may still be enumerating (held by the host, then delivered).
        b.wait_stderr("usb: the device disconnected")
        assert b.request("after") == "2 after"
        assert b.close() == 0
        err = b.stderr
        assert "usb: the device disconnected" in err
        assert "USB enumerations 2" in err
    finally:
        b.kill()


def test_through_a_pty_with_pyserial(board_fw, node_emulator, tmp_path):
    """EmulatedPico (pipeline.board.emulator) bridges board.mjs to a pty as it does run.mjs: board.mjs has
    the same process interface (kind="board": this test image carries no picotflm binary info)."""
    import serial

    from pipeline.board.emulator import EmulatedPico

    with EmulatedPico(board_fw["uf2"], emulator=node_emulator, cycles=True, kind="board") as pico:
        assert pico.kind == "board"
        with serial.Serial(pico.port, 115200, timeout=60) as port:
            port.write(b"core1 30\n")
            assert port.readline() == b"1 core1 8555 cpuid=1 launches=1\n"
            port.write(b"hello pty\n")
            assert port.readline() == b"2 hello pty\n"


def test_chip_reset_boots_again_and_enumerates_anew(board_fw, node_emulator):
    b = Board(node_emulator, board_fw["uf2"], "--cycles")
    try:
        assert b.request("why") == "1 why watchdog=0 enable=0"
        assert b.request("core1 10").startswith("2 core1 285 ")
        assert b.request("reboot") == "3 reboot"  # watchdog_reboot(0, 0, 10)
        # (a line sent before the reset would be lost with the device's buffers, as on a board)
        b.wait_stderr("chip reset (watchdog)")
        assert b.request("why") == "1 why watchdog=1 enable=0"  # a new boot: line numbers restart
        assert b.request("core1 10").startswith("2 core1 285 ")  # core 1 launched again
        assert b.request("sysreset") == "3 sysreset"  # AIRCR.SYSRESETREQ
        b.wait_stderr("chip reset (AIRCR.SYSRESETREQ)")
        assert b.request("why") == "1 why watchdog=0 enable=0"
        assert b.close() == 0
        err = b.stderr
        assert "chip reset (watchdog)" in err and "chip reset (AIRCR.SYSRESETREQ)" in err
        assert "USB enumerations 3; chip resets 2" in err
    finally:
        b.kill()


def test_firmware_call_to_unserved_rom_address_exits_3(board_fw, node_emulator):
    b = Board(node_emulator, board_fw["uf2"])
    try:
        assert b.request("unserved") == "1 calling 0x3000"
        assert b.wait() == 3
        assert "call to ROM address 0x00003000, which the ROM stand-in does not serve" in b.stderr
    finally:
        b.kill()


def test_rom_float_image_boots_and_stops_at_its_first_float_operation(tmp_path_factory, node_emulator):
    """The SDK's default float (the ROM's table): the image boots and works until it multiplies floats."""
    fw = build_board_fw(tmp_path_factory, "-DBOARD_FW_ROM_FLOAT=ON")
    b = Board(node_emulator, fw["uf2"])
    try:
        assert b.request("hello") == "1 hello"
        b.send("float")
        assert b.wait() == 3
        assert ("the ROM's soft-float function fmul (table SF" in b.stderr and
                "build the image with pico_set_float_implementation(<target> compiler)" in b.stderr)
    finally:
        b.kill()


def test_reset_usb_boot_stops_with_exit_0(board_fw, node_emulator):
    b = Board(node_emulator, board_fw["uf2"])
    try:
        assert b.request("bootsel") == "1 bootsel"
        assert b.wait() == 0
        assert "reset_usb_boot" in b.stderr
    finally:
        b.kill()
