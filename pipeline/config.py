"""One frozen, self-validating dataclass per stage.

A recipe says *what* a run does (stages and their settings). Ports, timeouts and paths of this
machine are CLI flags, never recipe. Every config validates itself in ``__post_init__`` and raises
:class:`ConfigError` naming the field, the value and what is allowed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from pipeline.errors import PipelineError

PIZZA_CLASSES = ("basic", "burnt", "combined", "mixed", "progression", "segment")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConfigError(PipelineError, ValueError):
    """An invalid config value or recipe."""


def _bad(section: str, name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(
        f"invalid value for {section}.{name}: {value!r}; allowed: {allowed}",
        hint="fix the recipe file or the command-line flag that sets it",
    )


def _int_range(section: str, name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
        raise _bad(section, name, value, allowed)


def _float_range(section: str, name: str, value: Any, lo: float, hi: float, hi_open: bool = False,
                 lo_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise _bad(section, name, value, f"a number in {left}{lo}, {hi}{right}")


def _choice(section: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise _bad(section, name, value, "one of " + ", ".join(repr(c) for c in choices))


def _bool(section: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad(section, name, value, "true or false")


def check_c_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a safe C identifier (ASCII, <= 64 chars), else raise ConfigError."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid C identifier",
            hint="use ASCII letters, digits and '_', not starting with a digit, at most 64 characters",
        )
    return value


def check_class_name(value: str, what: str = "class name") -> str:
    """Class names label the outputs: in reports, sample folders and the generated C (as escaped string
    literals, never as identifiers). Any printable text of 1-64 characters (quotes, `*/`, non-ASCII
    are fine), but not a path: no '/' or '\\', not '.' or '..'."""
    if (not isinstance(value, str) or not 1 <= len(value) <= 64 or value in (".", "..")
            or any(c in "/\\" or not c.isprintable() for c in value)):
        raise ConfigError(
            f"{what} {value!r} is not allowed",
            hint="use 1 to 64 printable characters without '/' or '\\' (not '.' or '..'): it names a folder of samples",
        )
    return value


def check_run_name(value: str) -> str:
    """Run names become directory names: no path separators, no '..', ASCII only."""
    if not isinstance(value, str) or not _RUN_NAME.match(value) or ".." in value:
        raise ConfigError(
            f"run name {value!r} is not allowed",
            hint="use ASCII letters, digits, '.', '_' and '-' (at most 64, no '..', no '/')",
        )
    return value


# --------------------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split."""

    source: str = "synthetic"  # "synthetic" or a folder with one sub-folder per class
    seed: int = 0
    samples_per_class: int = 400  # synthetic only
    image_size: int = 48
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    classes: tuple[str, ...] = PIZZA_CLASSES

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise _bad("data", "source", self.source, "'synthetic' or a folder path")
        _int_range("data", "seed", self.seed, 0)
        _int_range("data", "samples_per_class", self.samples_per_class, 3, 100_000)
        _int_range("data", "image_size", self.image_size, 8, 512)
        _float_range("data", "val_fraction", self.val_fraction, 0.0, 0.5, lo_open=True)
        _float_range("data", "test_fraction", self.test_fraction, 0.0, 0.5, lo_open=True)
        if not isinstance(self.classes, tuple) or len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise _bad("data", "classes", self.classes, "a list of at least 2 distinct class names")
        for c in self.classes:
            check_class_name(c)


@dataclass(frozen=True)
class ModelConfig:
    """A registered architecture name, or the path of a user's ``.keras`` file."""

    name: str = "micropizzanet"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _bad("model", "name", self.name, "a registered model name or a .keras file path")
        _int_range("model", "seed", self.seed, 0)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 5e-3
    patience: int = 15  # early stopping on validation accuracy (best weights kept)
    seed: int = 0
    lr_schedule: str = "cosine"  # cosine: decays to 2 % of learning_rate over the epochs | constant

    def __post_init__(self) -> None:
        _int_range("train", "epochs", self.epochs, 1, 10_000)
        _int_range("train", "batch_size", self.batch_size, 1, 65_536)
        _float_range("train", "learning_rate", self.learning_rate, 0.0, 1.0, lo_open=True)
        _int_range("train", "patience", self.patience, 1, 10_000)
        _int_range("train", "seed", self.seed, 0)
        _choice("train", "lr_schedule", self.lr_schedule, ("cosine", "constant"))


@dataclass(frozen=True)
class PruneConfig:
    # magnitude: tfmot polynomial schedule | boundary: |w| < tau * max|W| | groups: whole groups of four
    # output channels of each Conv2D kernel, smallest L2 norm first, with their bias and BatchNorm shift,
    # so that a pruned channel outputs exactly zero (the codebook conv skips them; docs/kernels.md)
    method: str = "magnitude"
    target_sparsity: float = 0.5
    tau: float = 0.2
    epochs: int = 4
    frequency: int = 10
    skip_layers: list[str] = field(default_factory=list)  # groups: layers left unpruned, by name

    def __post_init__(self) -> None:
        _choice("prune", "method", self.method, ("magnitude", "boundary", "groups"))
        if not isinstance(self.skip_layers, (list, tuple)) or not all(isinstance(n, str) for n in self.skip_layers):
            raise _bad("prune", "skip_layers", self.skip_layers, "a list of layer names")
        _float_range("prune", "target_sparsity", self.target_sparsity, 0.0, 1.0, hi_open=True)
        _float_range("prune", "tau", self.tau, 0.0, 1.0, hi_open=True)
        _int_range("prune", "epochs", self.epochs, 1, 10_000)
        _int_range("prune", "frequency", self.frequency, 1, 100_000)


@dataclass(frozen=True)
class ClusterConfig:
    clusters: int = 16
    init: str = "kmeans_plus_plus"
    preserve_sparsity: bool = False
    fold_batchnorm: bool = True
    epochs: int = 4
    # clusters per output channel of each Conv2D kernel (tfmot cluster_per_channel) instead of per kernel
    per_channel: bool = False
    # 8: weights stored as int8. 2 or 4: each CONV_2D filter with at most 2**index_bits values per
    # output channel is stored on the device as index_bits-bit indices plus its table (codebook weights,
    # decoded by picotflm's kernels: pipeline/tflite/codebook.py)
    index_bits: int = 8
    # layers left unclustered (int8), by name: the first conv, say
    skip_layers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _int_range("cluster", "clusters", self.clusters, 2, 256)
        if not isinstance(self.skip_layers, (list, tuple)) or not all(isinstance(n, str) for n in self.skip_layers):
            raise _bad("cluster", "skip_layers", self.skip_layers, "a list of layer names")
        _choice("cluster", "init", self.init, ("kmeans_plus_plus", "linear", "density", "random"))
        _bool("cluster", "preserve_sparsity", self.preserve_sparsity)
        _bool("cluster", "fold_batchnorm", self.fold_batchnorm)
        _int_range("cluster", "epochs", self.epochs, 1, 10_000)
        _bool("cluster", "per_channel", self.per_channel)
        _choice("cluster", "index_bits", self.index_bits, (2, 4, 8))
        if self.index_bits < 8 and self.clusters > 1 << self.index_bits:
            raise ConfigError(
                f"cluster.clusters = {self.clusters} does not fit cluster.index_bits = {self.index_bits} "
                f"(at most {1 << self.index_bits} clusters)",
                hint=f"set cluster.clusters <= {1 << self.index_bits} or a wider cluster.index_bits",
            )


@dataclass(frozen=True)
class QuantizeConfig:
    """``ptq`` leaves the Keras model as it is (the convert stage quantizes); the others train."""

    method: str = "ptq"  # ptq | qat | cqat | pqat | pcqat
    weight_bits: int = 8  # 4 only with a QAT method: real packed INT4 weights
    epochs: int = 4
    learning_rate: float = 2e-4  # Adam, quantization-aware fine-tuning
    lr_schedule: str = "constant"  # constant | cosine: decays to 0 over the epochs
    # per-layer weight bits ({"conv0": 8}): mixed precision; layers not named take weight_bits
    layer_bits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice("quantize", "method", self.method, ("ptq", "qat", "cqat", "pqat", "pcqat"))
        _choice("quantize", "weight_bits", self.weight_bits, (8, 4))
        if not isinstance(self.layer_bits, dict):
            raise _bad("quantize", "layer_bits", self.layer_bits, "a table of layer name = 4 or 8")
        for name, bits in self.layer_bits.items():
            if isinstance(bits, bool) or bits not in (4, 8):
                raise _bad("quantize", f"layer_bits.{name}", bits, "4 or 8 (the weight bit widths TFLM runs)")
        if self.layer_bits and self.method != "qat":
            raise ConfigError(
                f"quantize.layer_bits needs quantize.method = 'qat', but it is {self.method!r}",
                hint="per-layer bit widths are set by 4-/8-bit quantization-aware training; use method = 'qat'",
            )
        _float_range("quantize", "learning_rate", self.learning_rate, 0.0, 1.0, lo_open=True)
        _choice("quantize", "lr_schedule", self.lr_schedule, ("constant", "cosine"))
        if self.weight_bits == 4 and self.method == "ptq":
            raise ConfigError(
                "quantize.weight_bits = 4 needs quantization-aware training, but quantize.method is 'ptq'",
                hint="set quantize.method = 'qat' (TFLiteConverter has no post-training int4)",
            )
        _int_range("quantize", "epochs", self.epochs, 1, 10_000)


@dataclass(frozen=True)
class ConvertConfig:
    representative_samples: int = 200
    slim: bool = True  # keep only what TFLM reads (convert.slim: names, signatures, bias quantization, duplicates)

    def __post_init__(self) -> None:
        _int_range("convert", "representative_samples", self.representative_samples, 1, 100_000)
        _bool("convert", "slim", self.slim)


@dataclass(frozen=True)
class TfliteConfig:
    """A user's ``.tflite`` as the start of a run (the flow enters at verify): the model file, and the
    inputs to verify and measure it with (a ``.npz``/``.npy`` file or an image folder; none: seeded
    random inputs over the input's range)."""

    path: str = ""  # the .tflite file (copied into the run as model.tflite)
    inputs: str = ""  # .npz (x / inputs, optional y / labels), .npy, or an image folder (one sub-folder per class)
    random_inputs: int = 16  # how many seeded random inputs when `inputs` is empty
    seed: int = 0
    max_inputs: int = 256  # at most this many of the user's inputs are kept (the first ones)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):  # empty here; a recipe with the stage must name it (flow.recipe)
            raise _bad("tflite", "path", self.path, "the path of a .tflite file")
        if not isinstance(self.inputs, str):
            raise _bad("tflite", "inputs", self.inputs, "a .npz or .npy file, an image folder, or \"\" (seeded random)")
        _int_range("tflite", "random_inputs", self.random_inputs, 1, 10_000)
        _int_range("tflite", "seed", self.seed, 0)
        _int_range("tflite", "max_inputs", self.max_inputs, 1, 100_000)


@dataclass(frozen=True)
class VerifyConfig:
    reference_samples: int = 64  # seeded inputs for TFLM vs TFLite agreement
    max_arena_bytes: int = 1 << 20  # upper bound of the arena bisection
    seed: int = 0

    def __post_init__(self) -> None:
        _int_range("verify", "reference_samples", self.reference_samples, 1, 100_000)
        _int_range("verify", "max_arena_bytes", self.max_arena_bytes, 1024, 1 << 28)
        _int_range("verify", "seed", self.seed, 0)


@dataclass(frozen=True)
class RenderConfig:
    model_name: str = "micropizzanet"  # C identifier: g_<model_name>_model_data
    arena_bytes: int = 0  # 0: host minimal arena + margin
    arena_margin_percent: float = 25.0
    arena_margin_bytes: int = 1024
    golden_count: int = 8
    # A convolution writes its output over its own input where that is safe (pipeline/codegen/memplan.py;
    # used by the picotflm kernels, which run that op on one core)
    inplace: bool = True

    def __post_init__(self) -> None:
        check_c_identifier(self.model_name, "render.model_name")
        _bool("render", "inplace", self.inplace)
        _int_range("render", "arena_bytes", self.arena_bytes, 0, 256 * 1024)
        _float_range("render", "arena_margin_percent", self.arena_margin_percent, 0.0, 400.0)
        _int_range("render", "arena_margin_bytes", self.arena_margin_bytes, 0, 128 * 1024)
        _int_range("render", "golden_count", self.golden_count, 1, 64)


@dataclass(frozen=True)
class BuildConfig:
    # board: the image a user flashes (boot2, USB CDC, both cores), measured on a Pico or the emulated
    # Pico | emulator: one core, UART0, no ROM calls (runs on a bare rp2040js; no figure needs it)
    image: str = "board"
    build_type: str = "Release"
    # picotflm: our M0+ kernels for CONV_2D, DEPTHWISE_CONV_2D and MEAN (bit-exact with the stock
    # ones) | stock: pico-tflmicro's CMSIS-NN kernels
    kernels: str = "picotflm"
    # board image only: the SDK's Microsoft OS 2.0 descriptor for the USB reset interface, which lets
    # Windows bind WinUSB to it without a driver install (`picotool load -f` on a running board). It
    # costs 732 B of static RAM (tinyusb's vendor class); without it the reset interface stays, Linux
    # and macOS picotool use it as before, and BOOTSEL + drag-and-drop works everywhere.
    usb_windows_reset: bool = False
    # emulator image only: split the convolutions between the cores as the board image does, each of
    # core 1's jobs run on core 0 at once on core 1's stack, so that the emulated Pico measures that
    # stack's depth and the split ops' outputs (not their speed: one core runs both halves in turn)
    emulate_core1: bool = False

    def __post_init__(self) -> None:
        _choice("build", "image", self.image, ("emulator", "board"))
        _choice("build", "kernels", self.kernels, ("picotflm", "stock"))
        _bool("build", "usb_windows_reset", self.usb_windows_reset)
        _bool("build", "emulate_core1", self.emulate_core1)
        if self.emulate_core1 and self.image != "emulator":
            raise ConfigError("build.emulate_core1 = true is for the emulator image: the board image runs core 1 itself",
                              hint="set build.image = \"emulator\", or leave build.emulate_core1 = false")
        _choice("build", "build_type", self.build_type, ("Release", "Debug", "MinSizeRel", "RelWithDebInfo"))


@dataclass(frozen=True)
class MeasureConfig:
    bench_runs: int = 10
    infer_frames: int = 8  # test-split frames sent to the board for `infer`

    def __post_init__(self) -> None:
        _int_range("measure", "bench_runs", self.bench_runs, 1, 1000)  # the firmware's bench limit
        _int_range("measure", "infer_frames", self.infer_frames, 0, 10_000)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config (tuples become lists)."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
