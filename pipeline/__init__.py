"""picotflm: a small Keras CNN through compression, int8 TFLite, TFLM firmware for a Raspberry Pi Pico,
and measurement over serial. See README.md."""

__version__ = "0.1.0"

from pathlib import Path as _Path

PACKAGE_DIR = _Path(__file__).resolve().parent  # pipeline/
REPO_ROOT = PACKAGE_DIR.parent  # the checkout: firmware/, tools/, the root CMakeLists.txt
