"""The emulated Pico: a firmware image running in rp2040js (``tools/emulator``) with its serial port
(USB CDC for the board image, UART0 for the emulator image) behind a pseudo-terminal that pyserial
opens like a real board's port.

``EmulatedPico(image)`` is a context manager with ``.port``; ``serve(image, announce)`` runs one until
Ctrl-C (``picotflm emulate``). Nothing else in ``pipeline`` needs to know the board is emulated.
"""
from pipeline.board.emulator.image import check_image, detect_format, looks_like_flash_bin
from pipeline.board.emulator.pico import (
    RP2040JS_VERSION,
    EmulatedPico,
    check_emulator_dir,
    emulator_dir,
    find_node,
    image_kind,
    open_raw_pty,
    serve,
    setup_emulator,
)

__all__ = [
    "EmulatedPico", "serve", "open_raw_pty", "emulator_dir", "check_emulator_dir", "find_node", "image_kind",
    "setup_emulator", "check_image", "detect_format", "looks_like_flash_bin", "RP2040JS_VERSION",
]
