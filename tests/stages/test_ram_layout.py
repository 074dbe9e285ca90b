"""Where the firmware's code and newlib's state sit, read from both built images (ELF and link map).

firmware/CMakeLists.txt links newlib-nano and keeps the SDK's mutex functions in flash. These tests
check what makes that safe on a real board, which the emulator cannot show: code that runs while
flash is unreadable (XIP off), and everything it calls, is still in SRAM; so is the USB interrupt
path; the mutex functions that moved are called from flash code only; and objects compiled against
full newlib's headers never touch the per-thread state whose layout differs in newlib-nano. The board
image leaves out the USB reset interface's Microsoft OS 2.0 descriptor, and with it tinyusb's vendor
class, unless build.usb_windows_reset asks for it; its USB descriptors stay valid either way.
"""
import functools
import re
import subprocess
from pathlib import Path

import pytest

from pipeline.config import BuildConfig
from tests import _models

pytestmark = pytest.mark.firmware

SRAM = range(0x2000_0000, 0x2004_2000)  # striped SRAM and the two 4 KB scratch banks
# The functions of hardware_flash that switch XIP off (flash_exit_xip) and back on before returning.
XIP_OFF_ENTRIES = ("flash_do_cmd", "flash_range_erase", "flash_range_program", "flash_start_xip")
# newlib's own printf family: never linked, every printf-style call goes to the SDK's pico_printf.
NEWLIB_PRINTF = ("_vfprintf_r", "_svfprintf_r", "_vfiprintf_r", "_svfiprintf_r", "_printf_i", "_printf_float")
# How code compiled against newlib's headers reaches struct _reent (stdin/stdout/stderr, _REENT):
# its size and layout are not the same in newlib-nano (_REENT_SMALL) and full newlib.
REENT_SYMBOLS = {"_impure_ptr", "_global_impure_ptr", "__getreent"}


def _tool(toolchain, name: str) -> str:
    gcc = str(toolchain.gcc)
    return gcc[: -len("gcc")] + name  # arm-none-eabi-gcc -> arm-none-eabi-objdump


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The firmware sources of one rendered int8 model."""
    gen = tmp_path_factory.mktemp("gen")
    _models.render_with_golden(_models.int8_tflite(), gen)
    return gen


@pytest.fixture(scope="module")
def images(toolchain, generated, tmp_path_factory):
    """Both images of that model, as built by default: {image: BuildResult}."""
    from pipeline.stages.build import build_firmware
    from pipeline.stages.build import build_dir_for

    root = tmp_path_factory.mktemp("ram_layout")
    return {image: build_firmware(generated, build_dir_for(root, image), BuildConfig(image=image),
                                  toolchain=toolchain)
            for image in ("emulator", "board")}


def _symbols(elf: Path) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of the ELF's functions and objects."""
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name: (s["st_value"] & ~1, s["st_size"]) for s in symtab.iter_symbols()
                if s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")}


def _object_bytes(elf: Path, name: str) -> bytes:
    """The initial contents of a data object of the ELF (a descriptor table in flash)."""
    from elftools.elf.elffile import ELFFile

    addr, size = _symbols(elf)[name]
    with open(elf, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            start = sec["sh_addr"]
            if sec["sh_type"] != "SHT_NOBITS" and sec["sh_flags"] & 0x2 and start <= addr < start + sec["sh_size"]:
                return sec.data()[addr - start: addr - start + size]
    raise AssertionError(f"{name} has no contents in {elf.name}")


def _usb_descriptors(elf: Path) -> tuple[int, list[tuple[int, int, int, int]]]:
    """bcdUSB of the stdio_usb device descriptor, and (number, class, subclass, protocol) of each
    interface of its configuration descriptor, after checking the configuration's lengths and counts."""
    device = _object_bytes(elf, "usbd_desc_device")
    assert device[:2] == bytes((18, 1))  # bLength, DEVICE
    cfg = _object_bytes(elf, "usbd_desc_cfg")
    assert cfg[1] == 2 and int.from_bytes(cfg[2:4], "little") == len(cfg)  # CONFIGURATION, wTotalLength
    interfaces, i = [], 0
    while i < len(cfg):
        length, kind = cfg[i], cfg[i + 1]
        assert length >= 2 and i + length <= len(cfg)
        if kind == 4:  # INTERFACE
            interfaces.append(tuple(cfg[i + 2: i + 3]) + tuple(cfg[i + 5: i + 8]))
        i += length
    assert cfg[4] == len({itf[0] for itf in interfaces})  # bNumInterfaces
    return int.from_bytes(device[2:4], "little"), interfaces


# the SDK's reset interface (pico/usb_reset_interface.h): vendor class, subclass 0, protocol 1
RESET_INTERFACE = (0xFF, 0x00, 0x01)
# tinyusb's vendor class state, compiled only for the Microsoft OS 2.0 descriptor
VENDOR_CLASS_STATE = ("_vendord_itf", "_vendord_epbuf")


def test_board_image_keeps_the_reset_interface_without_tinyusb_vendor_class(images):
    """By default (build.usb_windows_reset = false) the SDK's Microsoft OS 2.0 descriptor is left out:
    no tinyusb vendor class state in RAM (716 B of .bss), a USB 2.00 device (2.10 would make Windows
    ask for the BOS descriptor that is gone), and picotool's reset interface still there."""
    elf = images["board"].elf
    syms = _symbols(elf)
    assert [s for s in VENDOR_CLASS_STATE if s in syms] == []
    assert "resetd_control_xfer_cb" in syms  # the SDK's reset interface driver
    bcd_usb, interfaces = _usb_descriptors(elf)
    assert bcd_usb == 0x0200
    assert [itf[1:] for itf in interfaces].count(RESET_INTERFACE) == 1


_FUNC = re.compile(r"^([0-9a-f]{8}) <(.+)>:$")
_BRANCH = re.compile(r"^\s*[0-9a-f]+:\s+b(?:l|lx)?(?:eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)?(?:\.[nw])?\s+"
                     r"[0-9a-f]+ <([^>+]+)(?:\+0x[0-9a-f]+)?>")
_VENEER = re.compile(r"__(.+)_veneer")


def _calls(toolchain, elf: Path) -> tuple[dict[str, int], dict[str, set[str]]]:
    """From the disassembly: function -> address, and function -> the functions it branches to
    directly (calls and tail calls; a linker veneer stands for the function it reaches)."""
    return _disassembly_calls(_tool(toolchain, "objdump"), str(elf))


@functools.lru_cache(maxsize=None)
def _disassembly_calls(objdump: str, elf: str) -> tuple[dict[str, int], dict[str, set[str]]]:
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", elf],
                         capture_output=True, text=True, check=True).stdout
    addr, calls, cur = {}, {}, None
    for line in out.splitlines():
        m = _FUNC.match(line)
        if m:
            cur = m.group(2)
            addr[cur] = int(m.group(1), 16)
            calls.setdefault(cur, set())
            continue
        m = _BRANCH.match(line)
        if m and cur is not None and m.group(1) != cur:
            v = _VENEER.fullmatch(m.group(1))
            calls[cur].add(v.group(1) if v else m.group(1))
    return addr, calls


def _reachable(calls: dict[str, set[str]], roots) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(calls.get(f, ()))
    return seen


@pytest.mark.parametrize("image", ["emulator", "board"])
def test_code_that_runs_with_xip_off_and_everything_it_calls_is_in_sram(toolchain, images, image):
    """While XIP is off, code cannot be fetched from flash: the functions that switch it off, and
    every function they call, must be in SRAM. (Their remaining calls are indirect: the bootrom's
    flash routines, and boot2's copy in SRAM that turns XIP back on.)"""
    elf = images[image].elf
    addr, calls = _calls(toolchain, elf)
    entries = [f for f in XIP_OFF_ENTRIES if f in addr]
    if image == "board":
        # USB CDC names the board by the flash's unique ID, read at boot through flash_do_cmd
        assert "flash_do_cmd" in entries
    else:
        assert entries == []  # no USB, no unique ID: nothing in the emulator image switches XIP off
    in_flash = {f: hex(addr[f]) for f in _reachable(calls, entries) if addr.get(f) not in SRAM}
    assert in_flash == {}
    if entries:
        assert _symbols(elf)["boot2_copyout"][0] in SRAM


def test_usb_interrupt_path_stays_in_sram(toolchain, images):
    """With the SDK's RP2040-E15 workaround on, tinyusb forces its interrupt path into SRAM
    (rp2040_usb.h: PICO_RP2040_USB_DEVICE_UFRAME_FIX sets PICO_RP2040_USB_FAST_IRQ): the workaround
    times bulk-IN buffers against the SOF interrupt, and the map leaves that code where tinyusb puts it."""
    syms = _symbols(images["board"].elf)
    path = ("dcd_rp2040_irq", "hw_handle_buff_status", "hw_endpoint_start_next_buffer",
            "e15_is_critical_frame_period", "dcd_event_handler")
    assert {f: hex(syms[f][0]) for f in path if syms[f][0] not in SRAM} == {}


@pytest.mark.parametrize("image", ["emulator", "board"])
def test_mutexes_run_from_flash_and_no_sram_code_calls_them(toolchain, images, image):
    """The SDK marks its mutex functions time-critical (SRAM); here they are in flash. That is safe
    only while no code in SRAM (which may run with XIP off, or must not wait on flash) calls them."""
    addr, calls = _calls(toolchain, images[image].elf)
    mutexes = {f for f in addr if f.startswith("mutex_")}
    assert {"mutex_enter_blocking", "mutex_exit"} <= mutexes
    assert {f: hex(addr[f]) for f in mutexes if addr[f] in SRAM} == {}
    callers_in_sram = {f: sorted(calls[f] & mutexes) for f in calls if addr[f] in SRAM and calls[f] & mutexes}
    assert callers_in_sram == {}


@pytest.mark.parametrize("image", ["emulator", "board"])
def test_newlib_is_nano_and_its_printf_is_never_linked(images, image):
    """newlib-nano: its per-thread state is the small one and malloc keeps no 1 KB bin table in
    .data. newlib's printf (which in nano prints no floats) is not in the image at all."""
    syms = _symbols(images[image].elf)
    assert "__malloc_av_" not in syms  # full newlib's malloc bins (1,032 B of .data)
    assert syms["impure_data"][1] < 256  # struct _reent: ~100 B in nano, over 1 KB in full newlib
    assert [f for f in NEWLIB_PRINTF if f in syms] == []
    assert "__wrap_vsnprintf" in syms  # printf-style calls go to pico_printf


def _linked_objects(map_file: Path, build_dir: Path) -> tuple[list[Path], dict[Path, set[str]]]:
    """From the link map: the object files linked, and the archive members pulled in (archive -> names)."""
    objects, members = set(), {}
    for line in map_file.read_text(errors="replace").splitlines():
        m = re.match(r"^\s*(?:\.\S+\s+)?(?:0x[0-9a-f]+\s+0x[0-9a-f]+\s+)?(\S+\.a)\((\S+\.o)\)", line)
        if m:
            members.setdefault(Path(m.group(1)), set()).add(m.group(2))
            continue
        m = re.match(r"^\s*(?:\.\S+\s+)?0x[0-9a-f]+\s+0x[0-9a-f]+\s+(\S+\.o)$", line)
        if m:
            objects.add(m.group(1))
    resolve = lambda p: Path(p) if Path(p).is_absolute() else build_dir / p  # noqa: E731
    return sorted(resolve(p) for p in objects), {resolve(str(a)): ms for a, ms in members.items()}


@pytest.mark.parametrize("image", ["emulator", "board"])
def test_objects_compiled_against_full_newlib_headers_never_reach_its_per_thread_state(toolchain, images, image):
    """Only the link uses newlib-nano; the SDK, TFLM and our sources are compiled against full newlib's
    headers. Safe as long as no linked object outside newlib's C library refers to struct _reent."""
    res = images[image]
    objects, members = _linked_objects(res.elf.parent / "picotflm.elf.map", res.elf.parent.parent)
    assert any(a.name in ("libc_nano.a", "libg_nano.a") for a in members)
    assert any(p.name == "main.cpp.o" for p in objects) and any(a.name == "libpico-tflmicro.a" for a in members)
    nm = _tool(toolchain, "nm")
    found = {}
    for p in objects:
        for sym in subprocess.run([nm, "-u", str(p)], capture_output=True, text=True, check=True).stdout.split():
            if sym in REENT_SYMBOLS:
                found.setdefault(p.name, []).append(sym)
    for archive, names in members.items():
        if archive.name in ("libc_nano.a", "libg_nano.a"):
            continue  # newlib-nano itself, built with its own headers
        out = subprocess.run([nm, "-u", "-A", str(archive)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.rsplit(None, 2)  # "<archive>:<member>: U <symbol>"
            member = parts[0].rstrip(":").rsplit(":", 1)[-1]
            if member in names and parts[-1] in REENT_SYMBOLS:
                found.setdefault(f"{archive.name}({member})", []).append(parts[-1])
    assert found == {}


def test_usb_windows_reset_keeps_the_ms_os_20_descriptor(toolchain, generated, tmp_path_factory):
    """build.usb_windows_reset = true: the SDK's default, a USB 2.10 device with the Microsoft OS 2.0
    descriptor and tinyusb's vendor class (the option reaches the SDK's sources both ways)."""
    from pipeline.stages.build import build_firmware
    from pipeline.stages.build import build_dir_for

    root = tmp_path_factory.mktemp("ram_layout_win")
    cfg = BuildConfig(image="board", usb_windows_reset=True)
    elf = build_firmware(generated, build_dir_for(root, "board"), cfg, toolchain=toolchain).elf
    syms = _symbols(elf)
    assert [s for s in VENDOR_CLASS_STATE if s in syms] == list(VENDOR_CLASS_STATE)
    bcd_usb, interfaces = _usb_descriptors(elf)
    assert bcd_usb == 0x0210
    assert [itf[1:] for itf in interfaces].count(RESET_INTERFACE) == 1
