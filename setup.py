"""A wheel of picotflm carries what its stages build and run besides Python: the firmware sources and
the root CMake files (the build stage's CMake project) and the emulator's scripts (tools/emulator,
without node_modules), copied under ``pipeline/sources/``. An editable install (a checkout) reads them
where they are. Everything else is in pyproject.toml."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("CMakeLists.txt", "pico_sdk_import.cmake", "firmware", "tools/emulator")
SKIPPED = ("node_modules", "generated", "__pycache__")


class BuildPyWithSources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "pipeline" / "sources"
        for name in BUNDLED:
            src, out = ROOT / name, dest / name
            out.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*SKIPPED))
            else:
                shutil.copy2(src, out)


setup(cmdclass={"build_py": BuildPyWithSources})
