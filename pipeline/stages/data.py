"""Images for MicroPizzaNet: a deterministic synthetic pizza generator and a loader for a user's folder.

``make_dataset(cfg)`` is the stage function. Images are ``uint8 [N, H, W, 3]``; the model sees them
as ``float32 / 255`` (:func:`to_model_input`), so int8 conversion gets input scale 1/255 and zero
point -128. The synthetic generator is pure NumPy: image ``i`` of class ``c`` is drawn from its own
random stream seeded by ``(seed, c, i)``, so the same seed gives the same bytes whatever the sample
count. Splits are stratified and fixed by the seed.

The six synthetic classes:

* ``basic``: a plain cheese pizza (at most one topping);
* ``burnt``: darkened and charred, black blotches;
* ``combined``: many toppings of three kinds together (pepperoni, olives, green pepper), evenly spread;
* ``mixed``: a few toppings of random kinds, sizes and places;
* ``progression``: part-way through baking: pale dough, unmelted cheese shreds, sauce showing;
* ``segment``: a slice (wedge) missing.

Each image has a random position, size, rotation, perspective squash, background, lighting,
colour cast and noise.
"""
from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.config import PIZZA_CLASSES, DataConfig
from pipeline.errors import PipelineError
from pipeline.flow.rundir import reproducible_npz

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm")


# ------------------------------------------------------------------------------- dataset
@dataclass
class Dataset:
    """Three fixed splits of ``uint8`` images ``[N, H, W, 3]`` with integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str = "synthetic"
    skipped: tuple[str, ...] = field(default=())  # unreadable files of a user's folder

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; one of {SPLITS}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class: ``{"train": {"basic": 210, ...}, ...}``."""
        out = {}
        for s in SPLITS:
            _, y = self.split(s)
            binc = np.bincount(y, minlength=self.num_classes)
            out[s] = {c: int(binc[i]) for i, c in enumerate(self.class_names)}
        return out

    def summary(self) -> dict:
        counts = self.counts()
        return {
            "source": self.source,
            "image_shape": list(self.image_shape),
            "classes": list(self.class_names),
            "images": {s: int(sum(counts[s].values())) for s in SPLITS},
            "per_class": counts,
            "skipped_files": list(self.skipped),
        }

    # ---- the data.npz artifact
    def to_npz_bytes(self) -> bytes:
        """An ``.npz`` whose bytes depend only on the arrays (fixed zip timestamps)."""
        arrays = {
            "x_train": self.x_train, "y_train": self.y_train,
            "x_val": self.x_val, "y_val": self.y_val,
            "x_test": self.x_test, "y_test": self.y_test,
            "class_names": np.asarray(self.class_names, dtype=str),
        }
        return reproducible_npz(arrays)

    def save(self, path: str | Path) -> Path:
        from pipeline.flow.rundir import atomic_write_bytes

        return atomic_write_bytes(path, self.to_npz_bytes())

    @classmethod
    def load(cls, path: str | Path, source: str = "") -> "Dataset":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise PipelineError(f"cannot read dataset {path}: {e}", hint="run the data stage again") from None
        return cls(
            x_train=arrays["x_train"], y_train=arrays["y_train"], x_val=arrays["x_val"], y_val=arrays["y_val"],
            x_test=arrays["x_test"], y_test=arrays["y_test"],
            class_names=tuple(str(c) for c in arrays["class_names"]), source=source or str(path),
        )


def to_model_input(images: np.ndarray) -> np.ndarray:
    """``uint8`` images -> the model's ``float32`` input in [0, 1]."""
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)


# ---------------------------------------------------------------------------- stage entry
def make_dataset(cfg: DataConfig, warn: Callable[[str], None] | None = None, progress: bool = False) -> Dataset:
    """The data stage: synthetic pizzas or a user's folder, split by ``cfg.seed``."""
    if cfg.source == "synthetic":
        images, labels = synthetic_images(cfg, progress=progress)
        return split_dataset(images, labels, cfg, source="synthetic")
    images, labels, skipped = load_folder(cfg.source, cfg.classes, cfg.image_size)
    if skipped and warn is not None:
        warn(f"skipped {len(skipped)} unreadable image(s): " + ", ".join(skipped))
    ds = split_dataset(images, labels, cfg, source=str(cfg.source))
    ds.skipped = tuple(skipped)
    return ds


def split_dataset(images: np.ndarray, labels: np.ndarray, cfg: DataConfig, source: str) -> Dataset:
    """Stratified train/val/test split fixed by ``cfg.seed``; each split shuffled."""
    rng = np.random.default_rng([cfg.seed, 0x5B117])
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(len(cfg.classes)):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n = len(idx)
        n_test = max(1, int(round(n * cfg.test_fraction)))
        n_val = max(1, int(round(n * cfg.val_fraction)))
        if n - n_test - n_val < 1:
            raise PipelineError(
                f"class {cfg.classes[c]!r} has {n} image(s): too few for a train, validation and test split",
                hint="give every class at least 3 images (more for useful accuracy)",
            )
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    out = {}
    for s in SPLITS:
        idx = np.concatenate(parts[s])
        idx = idx[rng.permutation(len(idx))]
        out[f"x_{s}"] = images[idx]
        out[f"y_{s}"] = labels[idx].astype(np.int64)
    return Dataset(**out, class_names=tuple(cfg.classes), source=source)


# ------------------------------------------------------------------------ synthetic pizzas
# Colours in linear [0, 1] RGB.
_BAKED_CRUST = np.array([0.80, 0.54, 0.26])
_RAW_DOUGH = np.array([0.93, 0.86, 0.70])
_CHEESE = np.array([0.97, 0.80, 0.38])
_RAW_CHEESE = np.array([0.98, 0.96, 0.88])
_SAUCE = np.array([0.74, 0.17, 0.09])
_CHAR = np.array([0.10, 0.07, 0.05])
_BACKGROUNDS = np.array([
    [0.55, 0.38, 0.22],  # wooden board
    [0.62, 0.62, 0.60],  # steel
    [0.85, 0.85, 0.82],  # plate
    [0.30, 0.32, 0.40],  # slate
    [0.42, 0.55, 0.40],  # green cloth
])
_TOPPINGS = {  # name: (colour, radius range in px at 48x48, hole)
    "pepperoni": ((0.60, 0.10, 0.08), (2.2, 3.2), False),
    "olive": ((0.08, 0.08, 0.08), (1.4, 2.0), True),
    "pepper": ((0.18, 0.55, 0.16), (1.1, 1.7), False),
    "mushroom": ((0.52, 0.46, 0.38), (1.6, 2.4), False),
    "basil": ((0.10, 0.35, 0.08), (1.3, 1.9), False),
    "ham": ((0.95, 0.58, 0.60), (1.6, 2.4), False),
}
_COMBINED_KINDS = ("pepperoni", "olive", "pepper")


def synthetic_images(cfg: DataConfig, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``samples_per_class`` images of each class in ``cfg.classes`` (which must be the pizza classes)."""
    unknown = [c for c in cfg.classes if c not in PIZZA_CLASSES]
    if unknown:
        raise PipelineError(
            f"the synthetic generator draws only {', '.join(PIZZA_CLASSES)}; data.classes has {', '.join(unknown)}",
            hint="keep the default data.classes, or set data.source to a folder of your own images",
        )
    canvas = _Canvas(cfg.image_size)
    n = cfg.samples_per_class
    images = np.empty((n * len(cfg.classes), cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    labels = np.empty(n * len(cfg.classes), dtype=np.int64)
    k = 0
    with _bar(total=len(labels), desc="data", unit="img", enabled=progress) as bar:
        for c, name in enumerate(cfg.classes):
            cls_id = PIZZA_CLASSES.index(name)
            for i in range(n):
                rng = np.random.default_rng([cfg.seed, cls_id, i])
                images[k] = canvas.draw(name, rng)
                labels[k] = c
                k += 1
            bar.update(n)
    return images, labels


def _bar(**kwargs):
    from pipeline.progress import bar

    return bar(**kwargs)


def _ray_distance(d: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Distance of a point at radius ``d`` and angle ``delta`` from a ray starting at the origin."""
    return np.where(np.abs(delta) < math.pi / 2, d * np.abs(np.sin(delta)), d)


class _Canvas:
    """Precomputed pixel grids and noise upsamplers for one image size."""

    def __init__(self, size: int):
        self.size = size
        self.s = size / 48.0  # all lengths are given for 48x48 and scaled
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
        self.yy, self.xx = yy, xx
        self._up: dict[int, np.ndarray] = {}

    def smooth_noise(self, rng: np.random.Generator, cells: int) -> np.ndarray:
        """Bilinear-upsampled uniform noise in [0, 1] with ``cells`` x ``cells`` features."""
        m = self._up.get(cells)
        if m is None:
            pos = (np.arange(self.size) + 0.5) / self.size * cells
            m = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(cells + 1)[None, :]))
            self._up[cells] = m
        small = rng.random((cells + 1, cells + 1))
        return m @ small @ m.T

    def draw(self, cls: str, rng: np.random.Generator) -> np.ndarray:
        s, size = self.s, self.size
        # --- background: a surface colour, a little texture
        bg = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))] * rng.uniform(0.85, 1.15, 3)
        img = np.broadcast_to(bg, (size, size, 3)) * (0.9 + 0.2 * self.smooth_noise(rng, 4))[..., None]

        # --- geometry: centre, radius, rotation, perspective squash
        cx = size / 2 + rng.uniform(-5, 5) * s
        cy = size / 2 + rng.uniform(-5, 5) * s
        R = rng.uniform(14.0, 20.0) * s
        theta = rng.uniform(0, 2 * math.pi)
        squash = rng.uniform(0.82, 1.0)
        dx, dy = self.xx - cx, self.yy - cy
        u = dx * math.cos(theta) + dy * math.sin(theta)
        v = (-dx * math.sin(theta) + dy * math.cos(theta)) / squash
        d = np.hypot(u, v)
        ang = np.arctan2(v, u)  # in the pizza's own (rotated) frame

        # --- how baked: 1 = done; progression is part-way; burnt goes past done
        bake = rng.uniform(0.05, 0.6) if cls == "progression" else 1.0
        if cls == "progression":  # ovens heat unevenly: one side further along
            g = rng.uniform(0, 2 * math.pi)
            bake = np.clip(bake + 0.25 * (u * math.cos(g) + v * math.sin(g)) / R, 0.0, 1.0)[..., None]

        crust_col = _RAW_DOUGH + (_BAKED_CRUST - _RAW_DOUGH) * bake
        cheese_col = _RAW_CHEESE + (_CHEESE - _RAW_CHEESE) * bake
        cover = self.smooth_noise(rng, 7)
        if cls == "progression":  # unmelted shreds: fine grain, sauce shows between them
            cover = 0.55 * cover + 0.45 * rng.random((size, size))
            cheese_amount = rng.uniform(0.45, 0.6)
        else:
            cheese_amount = rng.uniform(0.62, 0.82)
        cheese = np.clip((cover - (1 - cheese_amount)) * 6 + 0.5, 0, 1)[..., None]
        top = _SAUCE + (cheese_col - _SAUCE) * cheese
        crust_w = rng.uniform(0.13, 0.2)
        crust = np.clip((d - R * (1 - crust_w)) / (0.8 * s) + 0.5, 0, 1)[..., None]
        crust_shade = 1.0 - 0.25 * np.clip((d - R * (1 - crust_w)) / (R * crust_w), 0, 1)[..., None] ** 2
        pizza = top + (crust_col * crust_shade - top) * crust

        # --- toppings
        kinds, count = self._toppings(cls, rng)
        if count:
            pizza = self._add_toppings(pizza, rng, kinds, count, (cx, cy, theta, squash), R * (1 - crust_w) * 0.92)

        # --- burnt: darken and char
        if cls == "burnt":
            dark = rng.uniform(0.45, 0.7)
            pizza = pizza * dark + _CHAR * (1 - dark) * 0.5
            char = self.smooth_noise(rng, rng.integers(5, 9))
            char_amount = rng.uniform(0.25, 0.5)
            blot = np.clip((char - (1 - char_amount)) * 5, 0, 1)[..., None]
            rim = np.clip((d - R * 0.75) / (R * 0.25), 0, 1)[..., None] * rng.uniform(0.3, 0.7)
            pizza = pizza + (_CHAR - pizza) * np.clip(blot + rim, 0, 1)

        # --- shape: disc, minus a wedge for segment
        alpha = np.clip(R - d + 0.5 * s, 0, 1)
        if cls == "segment":
            width = rng.uniform(math.radians(60), math.radians(120))
            a = np.mod(ang, 2 * math.pi)
            inside = a < width
            # distance (px) to the nearer of the wedge's two edges: soft, anti-aliased borders
            edge = np.minimum(_ray_distance(d, a), _ray_distance(d, width - a))
            wedge = np.where(inside, np.clip(edge / s + 0.5, 0, 1), 0.0)
            alpha = alpha * (1 - wedge)
        alpha = alpha[..., None]
        shadow = np.clip(R + 2.5 * s - np.hypot(self.xx - cx - 1.5 * s, self.yy - cy - 1.5 * s), 0, 1)[..., None]
        img = img * (1 - 0.25 * shadow * (1 - alpha))
        img = img + (pizza - img) * alpha

        # --- lighting: brightness, colour cast, gradient; then sensor noise
        gain = rng.uniform(0.72, 1.2)
        cast = 1 + rng.uniform(-0.08, 0.08, 3)
        g = rng.uniform(0, 2 * math.pi)
        grad = 1 + rng.uniform(0, 0.3) * ((self.xx - size / 2) * math.cos(g) + (self.yy - size / 2) * math.sin(g)) / size
        img = img * gain * cast * grad[..., None]
        img = img + rng.normal(0, rng.uniform(0.01, 0.05), img.shape)
        return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)

    @staticmethod
    def _toppings(cls: str, rng: np.random.Generator) -> tuple[list[str], int]:
        every = list(_TOPPINGS)
        if cls == "basic":
            return ["pepper"], int(rng.random() < 0.15)
        if cls == "combined":
            return list(_COMBINED_KINDS), int(rng.integers(12, 20))
        if cls == "mixed":
            kinds = list(rng.choice(every, size=int(rng.integers(1, 4)), replace=False))
            return kinds, int(rng.integers(5, 11))
        if cls == "segment":
            return ["pepperoni"], int(rng.integers(0, 5))
        if cls == "progression":
            return ["pepperoni"], int(rng.integers(0, 4))
        if cls == "burnt":
            return ["pepperoni", "olive"], int(rng.integers(0, 4))
        raise ValueError(cls)

    def _add_toppings(self, pizza: np.ndarray, rng: np.random.Generator, kinds: list[str], count: int,
                      frame: tuple[float, float, float, float], r_max: float) -> np.ndarray:
        """Discs (olives with a hole) on an even, jittered spiral (Vogel's sunflower); drawn in place,
        each only inside its own small window of the image."""
        s, size = self.s, self.size
        cx, cy, theta, squash = frame
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        start = rng.uniform(0, 2 * math.pi)
        for j in range(count):
            kind = kinds[j % len(kinds)] if kinds == list(_COMBINED_KINDS) else kinds[rng.integers(len(kinds))]
            col, (r_lo, r_hi), hole = _TOPPINGS[kind]
            rr = r_max * math.sqrt((j + 0.5) / count) * rng.uniform(0.85, 1.0)
            phi = start + j * 2.39996 + rng.uniform(-0.3, 0.3)
            tu, tv = rr * math.cos(phi), rr * math.sin(phi)
            radius = rng.uniform(r_lo, r_hi) * s
            shade = np.asarray(col) * rng.uniform(0.85, 1.1)
            # the topping's centre in image coordinates and a window around it
            tx = cx + tu * cos_t - tv * squash * sin_t
            ty = cy + tu * sin_t + tv * squash * cos_t
            half = radius + 2.0
            x0, x1 = max(0, int(tx - half)), min(size, int(tx + half) + 2)
            y0, y1 = max(0, int(ty - half)), min(size, int(ty + half) + 2)
            if x0 >= x1 or y0 >= y1:
                continue
            dx, dy = self.xx[y0:y1, x0:x1] - tx, self.yy[y0:y1, x0:x1] - ty
            lu = dx * cos_t + dy * sin_t
            lv = (-dx * sin_t + dy * cos_t) / squash
            dd = np.hypot(lu, lv)
            a = np.clip(radius - dd + 0.5, 0, 1)
            if hole:
                a = a * np.clip(dd - radius * 0.45 + 0.5, 0, 1)
            win = pizza[y0:y1, x0:x1]
            win += (shade - win) * a[..., None]
        return pizza


# ----------------------------------------------------------------------------- user folder
def load_folder(folder: str | Path, classes: tuple[str, ...], image_size: int
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images of ``folder/<class>/*`` resized to ``image_size`` RGB; returns images, labels, skipped files.

    Unreadable or corrupt files are skipped (and returned); a folder without usable images, with no
    class sub-folders or with class names other than ``classes`` is a :class:`PipelineError`.
    """
    from PIL import Image, ImageOps

    root = Path(folder).expanduser()
    hint_layout = "put the images in one sub-folder per class, e.g. " + f"{root}/{classes[0]}/001.jpg"
    if not root.exists():
        raise PipelineError(f"dataset folder {root} does not exist", hint="check data.source / --source")
    if not root.is_dir():
        raise PipelineError(f"dataset folder {root} is not a folder", hint=hint_layout)
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise PipelineError(f"dataset folder {root} is empty", hint=hint_layout)
    subdirs = sorted(p.name for p in entries if p.is_dir())
    if not subdirs:
        raise PipelineError(f"dataset folder {root} has no class sub-folders", hint=hint_layout)
    missing = [c for c in classes if c not in subdirs]
    extra = [d for d in subdirs if d not in classes]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("unexpected " + ", ".join(extra))
        raise PipelineError(
            f"class folders in {root} do not match data.classes ({'; '.join(parts)})",
            hint="name the sub-folders " + ", ".join(classes) + ", or set data.classes to your folder names",
        )

    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[str] = []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith("."))
        for p in files:
            try:
                with Image.open(p) as im:
                    im.load()
                    im = ImageOps.exif_transpose(im)
                    im = im.convert("RGB")
                    im = ImageOps.fit(im, (image_size, image_size), Image.Resampling.BILINEAR)
                    images.append(np.asarray(im, dtype=np.uint8))
                    labels.append(c)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                skipped.append(p.relative_to(root).as_posix())
    if not images:
        raise PipelineError(
            f"no readable images in {root}" + (f" ({len(skipped)} unreadable file(s))" if skipped else ""),
            hint="use common image formats (" + ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES[:6]) + ")",
        )
    counts = np.bincount(labels, minlength=len(classes))
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        raise PipelineError(f"no readable images for class(es) {', '.join(empty)} in {root}",
                            hint="every class folder needs at least 3 images")
    return np.stack(images), np.asarray(labels, dtype=np.int64), skipped


# ---------------------------------------------------------------------------- sample images
def write_samples(dataset: Dataset, out_dir: str | Path, per_class: int = 8, scale: int = 4) -> list[Path]:
    """PNGs of the first ``per_class`` training images of each class (``<out>/<class>/NN.png``) and one
    contact sheet ``<out>/samples.png`` (a row per class, enlarged ``scale`` times)."""
    from PIL import Image

    from pipeline.flow.rundir import atomic_write_bytes

    out = Path(out_dir)
    written: list[Path] = []
    x, y = dataset.x_train, dataset.y_train
    h, w = dataset.image_shape[:2]
    sheet = np.zeros((dataset.num_classes * h, per_class * w, 3), dtype=np.uint8)
    for c, name in enumerate(dataset.class_names):
        imgs = x[y == c][:per_class]
        for j, img in enumerate(imgs):
            written.append(atomic_write_bytes(out / name / f"{j:02d}.png", _png(img)))
            sheet[c * h:(c + 1) * h, j * w:(j + 1) * w] = img
    big = np.asarray(Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale),
                                                   Image.Resampling.NEAREST))
    written.append(atomic_write_bytes(out / "samples.png", _png(big)))
    return written


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def golden_indices(labels: np.ndarray, count: int) -> list[int]:
    """The first test sample of each class in turn, until ``count``: every class is covered."""
    labels = np.asarray(labels).astype(int)
    queues = [list(np.flatnonzero(labels == c)) for c in range(int(labels.max()) + 1)]
    out: list[int] = []
    while len(out) < min(count, len(labels)):
        for q in queues:
            if q and len(out) < count:
                out.append(int(q.pop(0)))
    return out
