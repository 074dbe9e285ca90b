"""Every fact of a target in one place: the RP2040 picotflm builds for, and the boards the feasibility
table weighs a model against (rows of the same table).

Memory figures are the chips' documented sizes: the RP2040 has 264 KB of SRAM (four striped 64 KB
banks and two 4 KB scratch banks) and the Pico carries 2 MB of QSPI flash.
"""
from __future__ import annotations

from dataclasses import dataclass

KB = 1024
MB = 1024 * KB
GB = 1024 * MB


@dataclass(frozen=True)
class Target:
    key: str
    name: str
    ram_bytes: int
    flash_bytes: int
    ram_note: str
    flash_note: str
    mcu: bool = True  # TFLM firmware; False: Linux, TFLite loads the model file into RAM
    clock_hz: int | None = None  # the clock the firmware runs at (the SDK's default)
    flash_base: int | None = None  # where flash is mapped (XIP)
    sram_base: int | None = None
    uf2_family: int | None = None  # UF2 family id that its bootloader accepts


RP2040 = Target("rp2040", "RP2040 (Raspberry Pi Pico)", 264 * KB, 2 * MB, "264 KB SRAM", "2 MB QSPI flash",
                clock_hz=125_000_000, flash_base=0x10000000, sram_base=0x20000000, uf2_family=0xE48BFF56)

TARGETS: dict[str, Target] = {t.key: t for t in (
    RP2040,
    Target("rp2350", "RP2350 (Raspberry Pi Pico 2)", 520 * KB, 4 * MB, "520 KB SRAM", "4 MB QSPI flash",
           clock_hz=150_000_000, flash_base=0x10000000, sram_base=0x20000000, uf2_family=0xE48BFF59),
    Target("esp32s3", "ESP32-S3 without PSRAM (ESP32-S3-WROOM-1-N8)", 512 * KB, 8 * MB, "512 KB SRAM",
           "8 MB flash (typical module)"),
    Target("esp32s3-psram", "ESP32-S3 with 8 MB PSRAM (ESP32-S3-WROOM-1-N8R8)", 512 * KB + 8 * MB, 8 * MB,
           "512 KB SRAM + 8 MB PSRAM", "8 MB flash"),
    Target("stm32f411", "STM32F411CE (Cortex-M4F, 100 MHz)", 128 * KB, 512 * KB, "128 KB SRAM", "512 KB flash"),
    Target("rpi4", "Raspberry Pi 4 Model B 4 GB (Linux, TFLite)", 4 * GB, 32 * GB, "4 GB RAM (the OS uses some)",
           "32 GB SD card (assumed)", mcu=False),
)}
