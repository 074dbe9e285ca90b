"""Build the Pico-SDK firmware (CMake + Ninja around the root ``CMakeLists.txt``) and read the ELF.

The Pico SDK and pico-tflmicro are found the way every Pico project finds them: ``PICO_SDK_PATH``
and ``PICO_TFLMICRO_PATH``, else where the official Pico tooling installs them
(``~/.pico-sdk/sdk/<version>``, ``~/.pico-sdk/pico-tflmicro``). Nothing here downloads anything.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.config import BuildConfig
from pipeline import INSTALLED, REPO_ROOT, SOURCE_ROOT, cache_dir
from pipeline.board.targets import RP2040
from pipeline.board.uf2 import write_uf2
from pipeline.errors import PipelineError

MIN_SDK_VERSION = (2, 0, 0)
TROUBLESHOOTING = "see README, Troubleshooting: firmware"


class ToolchainMissing(PipelineError):
    """The SDK, TFLM or the toolchain is absent: firmware stages cannot run on this machine."""


@dataclass(frozen=True)
class Toolchain:
    sdk: Path
    sdk_version: tuple[int, int, int]
    tflm: Path
    gcc: str
    cmake: str
    ninja: str
    ccache: str | None


def _sdk_version(sdk: Path) -> tuple[int, int, int] | None:
    f = sdk / "pico_sdk_version.cmake"
    if not f.is_file():
        return None
    text = f.read_text(errors="replace")
    parts = []
    for key in ("MAJOR", "MINOR", "REVISION"):
        m = re.search(rf"set\(PICO_SDK_VERSION_{key}\s+(\d+)\)", text)
        parts.append(int(m.group(1)) if m else 0)
    return tuple(parts)  # type: ignore[return-value]


def find_sdk(env: dict[str, str] | None = None) -> tuple[Path, tuple[int, int, int]]:
    env = os.environ if env is None else env
    tried = []
    candidates = []
    if env.get("PICO_SDK_PATH"):
        candidates.append(Path(env["PICO_SDK_PATH"]).expanduser())
    else:
        base = Path.home() / ".pico-sdk" / "sdk"
        if base.is_dir():
            candidates.extend(sorted(base.iterdir(), reverse=True))
        else:
            tried.append(str(base))
    for c in candidates:
        v = _sdk_version(c)
        tried.append(str(c))
        if v is None:
            continue
        if v < MIN_SDK_VERSION:
            raise ToolchainMissing(
                f"the Pico SDK at {c} is version {'.'.join(map(str, v))}; picotflm needs >= 2.0.0",
                hint="install Pico SDK 2.x and point PICO_SDK_PATH at it",
            )
        return c, v
    raise ToolchainMissing(
        "Pico SDK not found (looked in: " + (", ".join(tried) or "nowhere") + ")",
        hint="set PICO_SDK_PATH to a Pico SDK 2.x checkout, or install it at ~/.pico-sdk/sdk/<version>; "
        + TROUBLESHOOTING,
    )


def find_tflm(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    p = Path(env.get("PICO_TFLMICRO_PATH") or (Path.home() / ".pico-sdk" / "pico-tflmicro")).expanduser()
    if not (p / "CMakeLists.txt").is_file() or not (p / "src" / "tensorflow" / "lite" / "micro").is_dir():
        raise ToolchainMissing(
            f"pico-tflmicro not found at {p}",
            hint="set PICO_TFLMICRO_PATH to a raspberrypi/pico-tflmicro checkout, or put it at "
            "~/.pico-sdk/pico-tflmicro; " + TROUBLESHOOTING,
        )
    return p


def find_toolchain(env: dict[str, str] | None = None) -> Toolchain:
    """Everything the firmware build needs, or ToolchainMissing naming what and where."""
    env = os.environ if env is None else env
    sdk, version = find_sdk(env)
    tflm = find_tflm(env)
    gcc_dir = env.get("PICO_TOOLCHAIN_PATH")
    gcc = shutil.which("arm-none-eabi-gcc", path=(str(Path(gcc_dir) / "bin") + os.pathsep + gcc_dir) if gcc_dir else None)
    if not gcc:
        raise ToolchainMissing(
            "arm-none-eabi-gcc not found on PATH" + (f" nor in {gcc_dir}" if gcc_dir else ""),
            hint="apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib",
        )
    tools = {}
    for tool, pkg in (("cmake", "cmake"), ("ninja", "ninja-build")):
        found = shutil.which(tool)
        if not found:
            raise ToolchainMissing(f"{tool} not found on PATH", hint=f"apt-get install {pkg}")
        tools[tool] = found
    return Toolchain(sdk, version, tflm, gcc, tools["cmake"], tools["ninja"], shutil.which("ccache"))


# ------------------------------------------------------------------------------------ build
@dataclass
class BuildResult:
    elf: Path
    bin: Path
    uf2: Path
    image: str
    seconds: float
    memory: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("elf", "bin", "uf2"):
            d[k] = str(d[k])
        return d


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], what: str, log_file: Path) -> None:
    with open(log_file, "ab") as lf:
        lf.write(("\n$ " + " ".join(cmd) + "\n").encode())
        lf.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=lf, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-400:]
        errors = [line for line in tail if "error" in line.lower() or "fatal" in line.lower()]
        detail = (errors[-1] if errors else (tail[-1] if tail else "")).strip()[:300]
        raise PipelineError(f"{what} failed: {detail}", hint=f"full log: {log_file}")


def _cmake_cache(build_dir: Path) -> dict[str, str]:
    """The configure settings picotflm passes, as the build folder's CMakeCache.txt holds them."""
    keys = ("PICOTFLM_GENERATED_DIR", "PICOTFLM_IMAGE", "PICOTFLM_KERNELS", "PICOTFLM_USB_WINDOWS_RESET",
            "PICOTFLM_EMULATE_CORE1", "CMAKE_BUILD_TYPE")
    found: dict[str, str] = {}
    try:
        text = (build_dir / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        key = name.split(":", 1)[0]
        if sep and key in keys:
            found[key] = value
    return found


def build_firmware(generated_dir: Path, build_dir: Path, cfg: BuildConfig, *,
                   toolchain: Toolchain | None = None, log: Callable[[str], None] = lambda s: None) -> BuildResult:
    """Configure (once) and build the firmware image named by ``cfg.image``; write a UF2 beside it."""
    tc = toolchain or find_toolchain()
    generated_dir = Path(generated_dir).resolve()
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PICO_SDK_PATH"] = str(tc.sdk)
    env["PICO_TFLMICRO_PATH"] = str(tc.tflm)
    project = cmake_project()
    # ccache: paths under the project become relative, so a fresh build dir (or a clean clone) hits.
    env.setdefault("CCACHE_BASEDIR", str(project))
    env.setdefault("CCACHE_NOHASHDIR", "1")
    log_file = build_dir / "build.log"
    t0 = time.monotonic()
    wanted = {"PICOTFLM_GENERATED_DIR": str(generated_dir), "PICOTFLM_IMAGE": cfg.image,
              "PICOTFLM_KERNELS": cfg.kernels,
              "PICOTFLM_USB_WINDOWS_RESET": "ON" if cfg.usb_windows_reset else "OFF",
              "PICOTFLM_EMULATE_CORE1": "ON" if cfg.emulate_core1 else "OFF",
              "CMAKE_BUILD_TYPE": cfg.build_type}
    if not (build_dir / "build.ninja").is_file() or _cmake_cache(build_dir) != wanted:
        cmd = [tc.cmake, "-S", str(project), "-B", str(build_dir), "-G", "Ninja",
               *(f"-D{k}={v}" for k, v in wanted.items()), f"-DCMAKE_MAKE_PROGRAM={tc.ninja}"]
        if tc.ccache:
            cmd += [f"-DCMAKE_C_COMPILER_LAUNCHER={tc.ccache}", f"-DCMAKE_CXX_COMPILER_LAUNCHER={tc.ccache}"]
        log(f"configuring the {cfg.image} image, {cfg.kernels} kernels (CMake)")
        _run(cmd, cwd=project, env=env, what="CMake configure", log_file=log_file)
    log(f"building the {cfg.image} image (Ninja" + (", ccache" if tc.ccache else ", no ccache: a cold TFLM build takes ~10 min") + ")")
    _run([tc.ninja, "-C", str(build_dir), "picotflm"], cwd=project, env=env, what="firmware build", log_file=log_file)
    elf = build_dir / "firmware" / "picotflm.elf"
    binf = elf.with_suffix(".bin")
    if not elf.is_file() or not binf.is_file():
        raise PipelineError(f"the build finished but {elf.name} / {binf.name} are missing in {elf.parent}",
                            hint=f"full log: {log_file}")
    uf2 = elf.with_suffix(".uf2")
    if not uf2.is_file() or uf2.stat().st_mtime < binf.stat().st_mtime:
        write_uf2(binf.read_bytes(), uf2)
    return BuildResult(elf=elf, bin=binf, uf2=uf2, image=cfg.image, seconds=time.monotonic() - t0,
                       memory=elf_memory_map(elf))


# ------------------------------------------------------------------------------- ELF sizes
def elf_memory_map(elf_path: Path) -> dict[str, Any]:
    """Flash and static RAM use of the firmware ELF, from its sections and linker symbols."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        sections = {}
        flash = 0
        ram_static = 0
        for s in elf.iter_sections():
            if not (s["sh_flags"] & 0x2) or s["sh_size"] == 0:  # SHF_ALLOC
                continue
            addr, size = s["sh_addr"], s["sh_size"]
            nobits = s["sh_type"] == "SHT_NOBITS"
            sections[s.name] = {"addr": addr, "size": size}
            if RP2040.flash_base <= addr < RP2040.flash_base + RP2040.flash_bytes:
                flash += size
            elif RP2040.sram_base <= addr < RP2040.sram_base + RP2040.ram_bytes + 8 * 1024:
                if not nobits:
                    flash += size  # initialised RAM data is stored in flash too
                if s.name not in (".heap", ".stack_dummy", ".stack1_dummy"):
                    ram_static += size
        symbols: dict[str, int] = {}
        arena = None
        symtab = elf.get_section_by_name(".symtab")
        if isinstance(symtab, SymbolTableSection):
            wanted = {"__StackTop", "__StackBottom", "__StackLimit", "__end__", "__HeapLimit", "__bss_start__",
                      "__bss_end__", "__data_start__", "__data_end__", "__flash_binary_end"}
            for sym in symtab.iter_symbols():
                if sym.name in wanted:
                    symbols[sym.name] = sym["st_value"]
                elif "arena" in sym.name.lower() and sym["st_info"]["type"] == "STT_OBJECT":
                    if arena is None or sym["st_size"] > arena[1]:
                        arena = (sym.name, sym["st_size"])
    out: dict[str, Any] = {
        "flash_bytes": flash,
        "flash_size": RP2040.flash_bytes,
        "static_ram_bytes": ram_static,
        "sram_size": RP2040.ram_bytes,
        "sections": {k: v["size"] for k, v in sections.items()},
    }
    if "__flash_binary_end" in symbols:
        out["flash_binary_bytes"] = symbols["__flash_binary_end"] - RP2040.flash_base
    if arena:
        out["arena_symbol"] = arena[0]
        out["arena_static_bytes"] = arena[1]
    if "__StackTop" in symbols and "__StackBottom" in symbols:
        out["stack_bytes"] = symbols["__StackTop"] - symbols["__StackBottom"]
    if "__end__" in symbols and "__HeapLimit" in symbols:
        out["heap_region_bytes"] = symbols["__HeapLimit"] - symbols["__end__"]
    return out


# ---------------------------------------------------------------- build folders shared by runs
PROJECT_FILES = ("CMakeLists.txt", "pico_sdk_import.cmake", "firmware")  # the CMake project the build stage builds


def project_root() -> Path:
    """Where the CMake project and its build folders are: the checkout, or for an installed wheel a
    folder in picotflm's cache laid out as a checkout (so ccache hits across both)."""
    return cache_dir() / "project" if INSTALLED else REPO_ROOT


def cmake_project() -> Path:
    """The CMake project to build, in :func:`project_root`: an installed wheel's bundled sources are
    first brought there (only changed files are written)."""
    root = project_root()
    if root != SOURCE_ROOT:
        for name in PROJECT_FILES:
            src = SOURCE_ROOT / name
            if src.is_dir():
                sync_tree(src, root / name)
            elif not (root / name).is_file() or (root / name).read_bytes() != src.read_bytes():
                from pipeline.flow.rundir import atomic_write_bytes

                atomic_write_bytes(root / name, src.read_bytes())
    return root


def build_dir_for(run_root: Path, image: str) -> Path:
    """The CMake build folder of a run: ``build/<run key>-<image>/`` in :func:`project_root`, always at
    the same depth, so ccache (base dir: the project) reuses the TFLM objects of any earlier build,
    wherever the run directory itself is."""
    import hashlib

    key = hashlib.sha256(str(Path(run_root).resolve()).encode()).hexdigest()[:12]
    return project_root() / "build" / f"{Path(run_root).name[:24]}-{key}-{image}"


GENERATED_COPY = "picotflm_generated"  # in a shared build folder: the generated sources being built


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on ``path`` (a lock file) while the block runs; none where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sync_tree(src: Path, dst: Path) -> list[str]:
    """Make ``dst`` hold the files of ``src``: write only the files whose bytes differ (so Ninja
    rebuilds only what changed) and remove the ones ``src`` does not have; return what was written."""
    from pipeline.flow.rundir import atomic_write_bytes

    src, dst = Path(src), Path(dst)
    want = {p.relative_to(src): p for p in src.rglob("*") if p.is_file()}
    written = []
    for rel, p in sorted(want.items()):
        data = p.read_bytes()
        q = dst / rel
        if not q.is_file() or q.read_bytes() != data:
            atomic_write_bytes(q, data)
            written.append(str(rel))
    if dst.is_dir():
        for q in dst.rglob("*"):
            if q.is_file() and q.relative_to(dst) not in want:
                q.unlink()
    return written
