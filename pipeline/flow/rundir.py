"""The run directory (``runs/<name>/``), its manifest, atomic writes and sha256 helpers.

Every artifact is written to a temporary file in the same folder and moved into place with
``os.replace``, so a file is either the old one or the whole new one, never half-written; the
temporary file is removed when writing fails. ``manifest.json`` records what a run did: the
recipe, the resolved configs, library versions, input hashes and, per stage, its status, config
hash, input/output hashes and metrics. Stdlib only.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline.config import check_run_name
from pipeline.errors import PipelineError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_RUNS_DIR = "runs"

# Distributions whose versions go into every manifest (read from metadata: nothing is imported).
LIBRARIES = ("picotflm", "tensorflow", "tf-keras", "tensorflow-model-optimization", "tflite-micro", "numpy",
             "pillow", "jinja2", "pyserial", "pyelftools", "flatbuffers")


# ----------------------------------------------------------------------------------- hashing
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: str | Path) -> str:
    """One hash over every file under ``root``: relative paths and contents, in sorted order."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    p = Path(path)
    return sha256_tree(p) if p.is_dir() else sha256_file(p)


def sha256_json(value: Any) -> str:
    """Hash of a JSON-able value, independent of dict order."""
    return sha256_bytes(json.dumps(value, sort_keys=True, default=_json_default).encode())


# ----------------------------------------------------------------------------- atomic writes
def _write_error(path: Path, e: OSError) -> PipelineError:
    return PipelineError(
        f"cannot write {path}: {e.strerror or e}",
        hint="choose a writable output directory (e.g. --runs-dir or --out), or fix its permissions",
    )


@contextlib.contextmanager
def _atomic(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise _write_error(path, e) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise _write_error(path, e) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir():
            import shutil

            shutil.rmtree(p)
        else:
            p.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with _atomic(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    """numpy scalars/arrays, paths, tuples and sets as plain JSON."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"not JSON-serializable: {type(o).__name__}")


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=_json_default, allow_nan=True) + "\n"


def atomic_write_json(path: str | Path, value: Any) -> Path:
    return atomic_write_text(path, to_json(value))


def atomic_write_with(path: str | Path, writer: Callable[[Path], None], suffix: str = "") -> Path:
    """Let ``writer(tmp_path)`` write a file (e.g. a library's own ``save``), then move it into place.

    ``suffix`` is kept at the end of the temporary name for writers that choose a format by it.
    """
    with _atomic(path, suffix=suffix) as tmp:
        writer(tmp)
    return Path(path)


KERAS_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the date Keras itself gives metadata.json and config.json


def reproducible_keras_archive(path: str | Path) -> None:
    """Rewrite a ``.keras`` archive so the same model gives the same bytes: Keras stamps
    ``metadata.json`` with ``date_saved`` and the weights entry with the time of saving, which would
    make every hash of it (stage cache, the firmware banner's source sha256) change from run to run.
    Both get the archive's fixed 1980 date; the run's manifest says when the run happened."""
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in entries:
            if info.filename == "metadata.json":
                meta = json.loads(data)
                if "date_saved" in meta:
                    meta["date_saved"] = "1980-01-01@00:00:00"
                    data = json.dumps(meta).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=KERAS_ZIP_TIME)
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            fixed.create_system = info.create_system
            z.writestr(fixed, data)


def save_keras_model(model: Any, path: str | Path) -> Path:
    """``model.save`` to a temporary ``.keras`` file in the same folder (made reproducible, see
    :func:`reproducible_keras_archive`), then rename it into place."""
    path = Path(path)
    suffix = path.suffix if path.suffix in (".keras", ".h5") else ".keras"

    def write(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)  # Keras refuses to overwrite without asking
        model.save(str(tmp))
        if suffix == ".keras":
            reproducible_keras_archive(tmp)

    return atomic_write_with(path, write, suffix=suffix)


def determinism_record() -> dict[str, Any]:
    """What a run does for reproducibility and where TensorFlow does not promise it (manifest field
    ``determinism``). Static facts about this code and machine: nothing is imported."""
    return {
        "seeds": "every stage takes its seed from the recipe (Python, NumPy, TensorFlow)",
        "tf_op_determinism": True,  # keras_setup.seed_everything, called by every stage that trains
        "keras_archive_normalized": True,  # reproducible_keras_archive
        "cpu_threads": os.cpu_count(),
        "machine": platform.machine(),
        "tf_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "not_guaranteed": "TensorFlow promises identical results only on the same hardware and software: "
                          "another CPU type or instruction set (oneDNN and Eigen choose kernels by it), other "
                          "library versions (see versions) or TF_ENABLE_ONEDNN_OPTS may give other weights, "
                          "and with them another model.tflite; the thread count is not part of TensorFlow's "
                          "promise either (identical here across runs, not tested across thread counts)",
    }


# -------------------------------------------------------------------------------- versions
def library_versions() -> dict[str, str | None]:
    from pipeline import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "picotflm": __version__}
    for dist in LIBRARIES[1:]:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def reproducible_npz(arrays: dict[str, Any]) -> bytes:
    """An ``.npz`` of ``arrays`` whose bytes depend only on the arrays (stored, fixed zip timestamps)."""
    import io
    import zipfile

    import numpy as np

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


def stage_metrics(manifest: dict[str, Any], stage: str) -> dict[str, Any]:
    """The metrics a stage recorded in a run's manifest: {} unless it is done (or up to date)."""
    e = (manifest.get("stages") or {}).get(stage) or {}
    return dict(e.get("metrics") or {}) if e.get("status") in ("done", "up to date") else {}


# -------------------------------------------------------------------------------- run dir
@dataclass
class RunDir:
    """``<runs_dir>/<name>/``: every artifact of one run and its ``manifest.json``."""

    root: Path
    name: str

    @classmethod
    def of(cls, name: str, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> "RunDir":
        check_run_name(name)
        return cls(root=Path(runs_dir) / name, name=name)

    @classmethod
    def existing(cls, name_or_path: str, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> "RunDir":
        """An existing run: a name under ``runs_dir`` or the path of a run directory."""
        p = Path(name_or_path)
        if (p / MANIFEST).is_file():
            return cls(root=p, name=p.name)
        check_run_name(name_or_path)
        rd = cls(root=Path(runs_dir) / name_or_path, name=name_or_path)
        if not rd.manifest_path.is_file():
            raise PipelineError(
                f"no run {name_or_path!r} in {runs_dir} (no {rd.manifest_path})",
                hint="run `picotflm run` first, or give --runs-dir / the path of a run directory",
            )
        return rd

    def path(self, name: str) -> Path:
        """The path of artifact ``name`` (a plain relative name, e.g. ``model.keras``)."""
        p = Path(name)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"artifact names are relative to the run directory: {name!r}")
        return self.root / p

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def create(self) -> "RunDir":
        """Make the directory and prove it is writable (a probe file written and removed)."""
        if self.root.exists() and not self.root.is_dir():
            raise PipelineError(f"cannot use {self.root} as a run directory: it is a file",
                                hint="choose another --runs-dir or --name")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise PipelineError(
                f"runs directory {self.root} is not writable: {e.strerror or e}",
                hint="choose a writable --runs-dir, or fix its permissions",
            ) from None
        return self

    # ---- manifest
    def load_manifest(self) -> dict[str, Any]:
        """The manifest, or a fresh one when there is none yet (or it cannot be read)."""
        try:
            doc = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and doc.get("manifest_version") == MANIFEST_VERSION:
                doc.setdefault("stages", {})
                return doc
        except (OSError, ValueError):
            pass
        return new_manifest(self.name)

    def read_manifest(self) -> dict[str, Any]:
        """The manifest of a finished run; a clear error when it is missing or broken."""
        try:
            doc = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PipelineError(f"{self.manifest_path} does not exist", hint="run `picotflm run` first") from None
        except (OSError, ValueError) as e:
            raise PipelineError(f"cannot read {self.manifest_path}: {e}",
                                hint="run the recipe again to rewrite it") from None
        if not isinstance(doc, dict) or "stages" not in doc:
            raise PipelineError(f"{self.manifest_path} is not a picotflm manifest", hint="run the recipe again")
        return doc

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        manifest["updated"] = now_iso()
        return atomic_write_json(self.manifest_path, manifest)


def new_manifest(run_name: str) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "run": run_name,
        "created": now_iso(),
        "updated": now_iso(),
        "recipe": None,
        "versions": {},
        "inputs": {},
        "stages": {},
    }
