"""picotflm: a small Keras CNN through compression, int8 TFLite, TFLM firmware for a Raspberry Pi Pico,
and measurement over serial. See README.md."""

__version__ = "0.1.0"

from pathlib import Path as _Path

PACKAGE_DIR = _Path(__file__).resolve().parent  # pipeline/
REPO_ROOT = PACKAGE_DIR.parent  # the checkout (docs/, README.md: what the benchmark rewrites)
_BUNDLED = PACKAGE_DIR / "sources"  # an installed wheel's copy of the root CMake files, firmware/, tools/emulator
# Where firmware/, tools/emulator and the root CMakeLists.txt are: the checkout, or an installed wheel's copy.
SOURCE_ROOT = _BUNDLED if (_BUNDLED / "CMakeLists.txt").is_file() else REPO_ROOT
INSTALLED = SOURCE_ROOT == _BUNDLED


def cache_dir() -> _Path:
    """Where an installed picotflm keeps what it makes besides runs (firmware build folders, the emulated
    Pico's rp2040js): ``$PICOTFLM_CACHE_DIR``, else ``$XDG_CACHE_HOME/picotflm`` (``~/.cache/picotflm``)."""
    import os

    if os.environ.get("PICOTFLM_CACHE_DIR"):
        return _Path(os.environ["PICOTFLM_CACHE_DIR"]).expanduser()
    return _Path(os.environ.get("XDG_CACHE_HOME") or _Path.home() / ".cache").expanduser() / "picotflm"
