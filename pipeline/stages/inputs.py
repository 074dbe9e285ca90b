"""Ready input tensors for a user's ``.tflite``: the user's own (``.npz``, ``.npy``, an image folder) or
seeded random ones over the input's range, with labels where the user gave them.

``make_inputs(cfg, info) -> ModelInputs``; ``ModelInputs.save``/``load`` is the ``inputs.npz``
artifact that verify, render (golden data) and measure (test frames) read instead of the images of
``data.npz``: the values are the input tensor's, in its own type, nothing left to quantize.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import TfliteConfig, check_class_name
from pipeline.errors import PipelineError
from pipeline.flow.rundir import reproducible_npz
from pipeline.tflite.reader import ModelInfo

NUMPY_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "FLOAT32": np.float32,
               "INT64": np.int64, "BOOL": np.bool_}
FLOAT_RANDOM_RANGE = (-1.0, 1.0)  # seeded float inputs: the range most normalized models are trained on
_X_KEYS = ("x", "inputs", "input", "x_test")
_Y_KEYS = ("y", "labels", "label", "y_test")


@dataclass
class ModelInputs:
    """Input tensors ``x`` ``[N, *input_shape[1:]]`` in the input's dtype; ``y`` labels or None."""

    x: np.ndarray
    y: np.ndarray | None
    class_names: tuple[str, ...] = ()
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def labelled(self) -> bool:
        return self.y is not None

    def to_npz_bytes(self) -> bytes:
        """An ``.npz`` whose bytes depend only on the arrays (fixed zip timestamps)."""
        arrays = {"x": self.x, "source": np.asarray(self.source, dtype=str)}
        if self.y is not None:
            arrays["y"] = np.asarray(self.y, dtype=np.int64)
            arrays["class_names"] = np.asarray(self.class_names, dtype=str)
        return reproducible_npz(arrays)

    def save(self, path: str | Path) -> Path:
        from pipeline.flow.rundir import atomic_write_bytes

        return atomic_write_bytes(path, self.to_npz_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "ModelInputs":
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise PipelineError(f"cannot read inputs {path}: {e}", hint="run the tflite stage again (--force)") from None
        y = a.get("y")
        return cls(x=a["x"], y=y, class_names=tuple(str(c) for c in a.get("class_names", [])),
                   source=str(a["source"].reshape(-1)[0]) if "source" in a else "")

    def summary(self) -> dict:
        out = {"count": int(len(self.x)), "shape": list(self.x.shape[1:]), "dtype": str(self.x.dtype),
               "source": self.source, "labelled": self.labelled}
        if self.y is not None:
            out["classes"] = list(self.class_names)
            out["per_class"] = {c: int(n) for c, n in zip(self.class_names, np.bincount(self.y, minlength=len(self.class_names)))}
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def random_inputs(info: ModelInfo, count: int, seed: int) -> ModelInputs:
    """``count`` seeded inputs over the input's whole quantized range, or uniform floats in
    :data:`FLOAT_RANDOM_RANGE` for a float input."""
    rng = np.random.default_rng(seed)
    shape = (count,) + tuple(info.input.shape[1:])
    dt = _dtype(info)
    if np.issubdtype(dt, np.floating):
        lo, hi = FLOAT_RANDOM_RANGE
        x = rng.uniform(lo, hi, size=shape).astype(dt)
        what = f"{count} seeded random float32 inputs, uniform in [{lo:g}, {hi:g}) (seed {seed})"
    elif dt == np.bool_:
        x = rng.integers(0, 2, size=shape).astype(dt)
        what = f"{count} seeded random bool inputs (seed {seed})"
    else:
        ii = np.iinfo(dt)
        x = rng.integers(ii.min, int(ii.max) + 1, size=shape, dtype=np.int64).astype(dt)
        what = f"{count} seeded random {info.input.dtype.lower()} inputs over [{ii.min}, {ii.max}] (seed {seed})"
    return ModelInputs(x=x, y=None, source=what + ": no labels, so no accuracy")


def _dtype(info: ModelInfo):
    dt = NUMPY_TYPES.get(info.input.dtype)
    if dt is None:
        raise PipelineError(f"the model's input type {info.input.dtype} cannot be fed from the host",
                            hint="export a model with an int8, int16 or float32 input")
    return np.dtype(dt)


def to_input_tensor(arr: np.ndarray, info: ModelInfo, what: str) -> tuple[np.ndarray, list[str]]:
    """``arr`` as input tensors ``[N, *shape[1:]]`` of the input's dtype (one input without the batch
    dimension is taken as N = 1). Floats for a quantized input are quantized with its scale and zero
    point; any other type mismatch is refused."""
    notes: list[str] = []
    want = tuple(info.input.shape[1:])
    shape = tuple(arr.shape)
    if shape == want:
        arr = arr[None, ...]
    elif shape[1:] != want:
        raise PipelineError(f"{what} has shape {'x'.join(map(str, shape)) or 'scalar'}; the model's input is "
                            f"{'x'.join(map(str, info.input.shape))}",
                            hint=f"give arrays of shape N x {'x'.join(map(str, want))} (or one input of shape "
                                 f"{'x'.join(map(str, want))})")
    if len(arr) == 0:
        raise PipelineError(f"{what} holds no inputs", hint="give at least one input")
    dt = _dtype(info)
    if arr.dtype == dt:
        return np.ascontiguousarray(arr), notes
    if np.issubdtype(arr.dtype, np.floating) and np.issubdtype(dt, np.floating):
        return arr.astype(dt), notes
    if np.issubdtype(arr.dtype, np.floating) and np.issubdtype(dt, np.integer) and info.input.scale:
        if not np.all(np.isfinite(arr)):
            raise PipelineError(f"{what} holds NaN or infinite values", hint="give finite inputs")
        scale, zp = info.input.scale[0], info.input.zero_point[0] if info.input.zero_point else 0
        ii = np.iinfo(dt)
        q = np.clip(np.round(arr / scale + zp), ii.min, ii.max).astype(dt)
        notes.append(f"float values quantized with the input's scale {scale:.6g} and zero point {zp}")
        return q, notes
    raise PipelineError(f"{what} is {arr.dtype}; the model's input is {info.input.dtype.lower()}",
                        hint=f"save the inputs as {np.dtype(dt).name} (the input tensor's own values)"
                             + (" or as floats to be quantized with the input's scale" if info.input.scale else ""))


def _labels(y: np.ndarray | None, n: int, what: str) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y).reshape(-1) if np.asarray(y).ndim <= 1 else np.asarray(y)
    if y.ndim == 2 and y.shape[0] == n:  # one-hot
        y = y.argmax(axis=1)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise PipelineError(f"the labels in {what} are not {n} non-negative integers (shape {y.shape}, {y.dtype})",
                            hint="save integer class indices as 'y' (or 'labels'), one per input")
    return y.astype(np.int64)


def load_array_file(path: Path, info: ModelInfo) -> ModelInputs:
    """Inputs from an ``.npz`` (``x``/``inputs`` or the first array; ``y``/``labels``; ``class_names``) or ``.npy``."""
    what = f"inputs file {path}"
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PipelineError(f"cannot read {what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            hint="save the inputs with numpy.save (.npy) or numpy.savez (.npz)") from None
    y = None
    names: tuple[str, ...] = ()
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded as z:
            if not z.files:
                raise PipelineError(f"{what} holds no arrays", hint="save the inputs as 'x' with numpy.savez")
            key = next((k for k in _X_KEYS if k in z.files), z.files[0])
            try:
                x = z[key]
                ykey = next((k for k in _Y_KEYS if k in z.files and k != key), None)
                y = z[ykey] if ykey else None
                names = tuple(str(c) for c in z["class_names"]) if "class_names" in z.files else ()
            except ValueError as e:  # object arrays need pickle: refused
                raise PipelineError(f"cannot read {what}: {e}", hint="save plain numeric arrays") from None
        what = f"array {key!r} of {what}"
    else:
        x = loaded
    x, notes = to_input_tensor(np.asarray(x), info, what)
    y = _labels(y, len(x), str(path))
    if y is not None:
        n_classes = max(int(y.max()) + 1, info.output.elements if info.output.elements > 1 else 0)
        names = names if len(names) >= int(y.max()) + 1 else tuple(str(i) for i in range(n_classes))
        for c in names:
            check_class_name(c, f"class name in {path}")
    return ModelInputs(x=x, y=y, class_names=names, source=f"file {path.name}" + (", labelled" if y is not None else ""),
                       notes=tuple(notes))


def load_image_folder(root: Path, info: ModelInfo) -> ModelInputs:
    """Images of ``root`` (flat: no labels) or ``root/<class>/*`` (labels, classes in name order),
    resized to the input's height and width and channels, scaled to [0, 1] and quantized with the
    input's scale and zero point (as picotflm's own models are fed)."""
    from PIL import Image, ImageOps

    shape = info.input.shape
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise PipelineError(f"an image folder needs a model input of shape 1xHxWx1 or 1xHxWx3, this one is "
                            f"{'x'.join(map(str, shape))}", hint="give the inputs as a .npy or .npz file")
    h, w, c = shape[1], shape[2], shape[3]
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(d.name, sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith(".")))
              for d in subdirs] if subdirs else [("", sorted(f for f in root.iterdir()
                                                          if f.is_file() and not f.name.startswith(".")))]
    images, labels, skipped = [], [], 0
    for k, (_, files) in enumerate(groups):
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    im = ImageOps.exif_transpose(im).convert("L" if c == 1 else "RGB")
                    im = ImageOps.fit(im, (w, h), Image.Resampling.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
                    images.append(arr[..., None] if c == 1 else arr)
                    labels.append(k)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                skipped += 1
    if not images:
        raise PipelineError(f"no readable images in {root}" + (f" ({skipped} unreadable file(s))" if skipped else ""),
                            hint="put PNG/JPEG images in the folder (one sub-folder per class for labels)")
    x, notes = to_input_tensor(np.stack(images).astype(np.float32) / np.float32(255.0), info, f"images of {root}")
    notes.insert(0, f"images resized to {h}x{w}x{c} and scaled to [0, 1]")
    if skipped:
        notes.append(f"{skipped} unreadable file(s) skipped")
    names = tuple(name for name, _ in groups) if subdirs else ()
    for n in names:
        check_class_name(n, f"class folder in {root}")
    return ModelInputs(x=x, y=np.asarray(labels, dtype=np.int64) if subdirs else None, class_names=names,
                       source=f"image folder {root.name}" + (f", {len(names)} class folders" if subdirs else ", no labels"),
                       notes=tuple(notes))


def make_inputs(cfg: TfliteConfig, info: ModelInfo) -> ModelInputs:
    """The inputs ``cfg`` names (at most ``cfg.max_inputs`` of them), or seeded random ones."""
    if not cfg.inputs:
        return random_inputs(info, cfg.random_inputs, cfg.seed)
    p = Path(cfg.inputs).expanduser()
    if not p.exists():
        raise PipelineError(f"inputs {p} do not exist", hint="give a .npz or .npy file or an image folder (--inputs)")
    if p.is_dir():
        got = load_image_folder(p, info)
    elif p.suffix.lower() in (".npz", ".npy"):
        got = load_array_file(p, info)
    else:
        raise PipelineError(f"inputs {p} are neither a .npz nor a .npy file nor a folder",
                            hint="save them with numpy.save/savez, or give a folder of images")
    if len(got.x) > cfg.max_inputs:
        got = ModelInputs(x=got.x[:cfg.max_inputs], y=None if got.y is None else got.y[:cfg.max_inputs],
                          class_names=got.class_names, source=got.source,
                          notes=got.notes + (f"the first {cfg.max_inputs} of {len(got.x)} inputs kept (tflite.max_inputs)",))
    return got
