"""Recipes: which stages a run takes and their settings (a TOML file, ``--set`` overrides, or the
recipe a run recorded in its manifest). Stage names, order and config classes come from the stage
table (:mod:`pipeline.flow.table`); each config validates itself (:mod:`pipeline.config`).
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline import PACKAGE_DIR
from pipeline.config import ConfigError, config_to_dict
from pipeline.errors import PipelineError
from pipeline.flow.table import STAGE_BY_NAME, STAGE_ORDER, STAGES

RECIPES_DIR = PACKAGE_DIR / "recipes"
DEFAULT_RECIPE = "int8"


def make_config(stage: str, values: dict[str, Any] | None = None) -> Any:
    """Build the config of ``stage`` from a dict, refusing unknown keys by name."""
    st = STAGE_BY_NAME.get(stage)
    if st is None:
        raise ConfigError(f"unknown stage {stage!r}", hint="known stages: " + ", ".join(STAGE_ORDER))
    cls = st.config
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in [{stage}]: {', '.join(unknown)}",
            hint=f"settings of [{stage}]: {', '.join(sorted(known))}",
        )
    for k, v in list(values.items()):
        if isinstance(v, list):
            values[k] = tuple(v)
    return cls(**values)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    stages: tuple[str, ...] = ("data", "model", "train", "convert", "verify")
    configs: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the recipe file it came from

    def config(self, stage: str) -> Any:
        return self.configs[stage]

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> "Recipe":
        """A copy with some settings replaced (``{"train": {"epochs": 3}}``), validated again."""
        configs = dict(self.configs)
        for stage, vals in overrides.items():
            base = config_to_dict(configs[stage]) if stage in configs else {}
            base.update(vals)
            configs[stage] = make_config(stage, base)
        return dataclasses.replace(self, configs=configs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "stages": list(self.stages),
            "configs": {s: config_to_dict(c) for s, c in self.configs.items()},
        }


def resolve_recipe_path(name_or_path: str | None) -> Path:
    """A shipped recipe name (``int8``) or a path to a TOML file."""
    name = name_or_path or DEFAULT_RECIPE
    p = Path(name)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise ConfigError(f"recipe file {name} does not exist", hint="give a TOML file or a shipped recipe name")
        if not p.is_file():
            raise ConfigError(f"recipe {name} is not a file", hint="give a TOML file or a shipped recipe name")
        return p
    shipped = RECIPES_DIR / f"{name}.toml"
    if not shipped.is_file():
        names = ", ".join(sorted(q.stem for q in RECIPES_DIR.glob("*.toml")))
        raise ConfigError(f"unknown recipe {name!r}", hint=f"shipped recipes: {names}; or give a .toml path")
    return shipped


def parse_recipe(doc: dict[str, Any], name: str, source: str = "") -> Recipe:
    """Validate a parsed recipe document into a :class:`Recipe`."""
    doc = dict(doc)
    description = doc.pop("description", "")
    name = doc.pop("name", name)
    stages = doc.pop("stages", None)
    if stages is None:
        stages = ["data", "model", "train", "convert", "verify"]
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise ConfigError(f"recipe {name}: 'stages' must be a list of stage names", hint="e.g. stages = [\"data\", \"model\", \"train\"]")
    for s in stages:
        if s not in STAGE_BY_NAME:
            raise ConfigError(f"recipe {name}: unknown stage {s!r}", hint="known stages: " + ", ".join(STAGE_ORDER))
    if len(set(stages)) != len(stages):
        raise ConfigError(f"recipe {name}: a stage is listed twice in 'stages'", hint="list each stage once")
    order = [STAGE_ORDER.index(s) for s in stages]
    if order != sorted(order):
        raise ConfigError(
            f"recipe {name}: stages are out of order: {', '.join(stages)}",
            hint="the pipeline order is " + " -> ".join(STAGE_ORDER),
        )
    check_sources(name, tuple(stages))
    configs: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in STAGE_BY_NAME:
            raise ConfigError(f"recipe {name}: unknown table or key [{key}]", hint="known stages: " + ", ".join(STAGE_ORDER))
        if key not in stages:
            raise ConfigError(
                f"recipe {name}: settings for [{key}] but {key!r} is not in 'stages'",
                hint=f"add {key!r} to 'stages' or remove the [{key}] table",
            )
        if not isinstance(value, dict):
            raise ConfigError(f"recipe {name}: [{key}] must be a table", hint=f"write [{key}] followed by key = value lines")
        configs[key] = make_config(key, value)
    for s in stages:
        configs.setdefault(s, make_config(s))
    check_stage_compatibility(name, tuple(stages), configs)
    return Recipe(name=name, description=description, stages=tuple(stages), configs=configs, source=source)


def check_stage_compatibility(name: str, stages: tuple[str, ...], configs: dict[str, Any]) -> None:
    """Refuse stage combinations that cannot follow each other."""
    q = configs.get("quantize")
    if q is not None:
        if q.method in ("cqat", "pcqat") and "cluster" not in stages:
            raise ConfigError(
                f"recipe {name}: quantize.method = {q.method!r} preserves clusters, but no 'cluster' stage comes before it",
                hint="add 'cluster' to 'stages' or use method = 'qat'",
            )
        if q.method in ("pqat", "pcqat") and "prune" not in stages:
            raise ConfigError(
                f"recipe {name}: quantize.method = {q.method!r} preserves sparsity, but no 'prune' stage comes before it",
                hint="add 'prune' to 'stages' or use method = 'qat'",
            )
        if q.layer_bits and "model" in configs and configs["model"].name == "micropizzanet":
            # refused here, before any training; a user's .keras model is checked by the quantize stage
            from pipeline.stages.models.micropizzanet import LAYER_TYPES
            from pipeline.stages.optimize.quantize import check_layer_bits

            check_layer_bits(LAYER_TYPES, q)
    c = configs.get("cluster")
    if c is not None and c.index_bits < 8:
        b = configs.get("build")
        if b is not None and b.kernels != "picotflm":
            raise ConfigError(
                f"recipe {name}: cluster.index_bits = {c.index_bits} stores codebook weights that only picotflm's "
                f"kernels decode, but build.kernels = {b.kernels!r}",
                hint="set build.kernels = 'picotflm' or cluster.index_bits = 8")
        if q is not None and (q.weight_bits != 8 or q.layer_bits):
            raise ConfigError(
                f"recipe {name}: cluster.index_bits = {c.index_bits} encodes int8 CONV_2D filters, but quantize "
                f"makes int4 weights (weight_bits / layer_bits)",
                hint="set quantize.weight_bits = 8 without layer_bits, or cluster.index_bits = 8")
    t = configs.get("tflite")
    if t is not None and not t.path:
        raise ConfigError(f"recipe {name}: stage 'tflite' has no model file (tflite.path is empty)",
                          hint="set path = \"your.tflite\" under [tflite], or run `picotflm deploy MODEL.tflite`")
    for later in ("prune", "cluster", "quantize", "convert", "verify", "render", "build", "measure"):
        if ("model" in stages and later in stages and "train" not in stages
                and not _is_model_file(configs["model"].name)):
            raise ConfigError(
                f"recipe {name}: stage {later!r} needs a trained model, but there is no 'train' stage",
                hint="add 'train' to 'stages' or set model.name to a trained .keras file",
            )
    for dep in stages:
        for needs in producers_missing(dep, stages):
            raise ConfigError(f"recipe {name}: stage {dep!r} needs '{needs}' before it", hint=f"add '{needs}' to 'stages'")


def _input_names(stage: str, stages: tuple[str, ...]) -> tuple[str, ...]:
    """The artifacts ``stage`` reads in a recipe of ``stages`` (those a recipe-dependent input names
    only when the recipe has what it looks for: the run itself refuses the rest)."""
    try:
        return STAGE_BY_NAME[stage].input_names(Recipe(name="", stages=stages))
    except PipelineError:
        return ()


def producers_missing(stage: str, stages: tuple[str, ...]) -> list[str]:
    """For each artifact ``stage`` reads that no stage before it in ``stages`` writes: the stage(s) of
    the table that write it (``"convert' or 'tflite"`` when several do)."""
    before = stages[:stages.index(stage)]
    missing = []
    for artifact in _input_names(stage, stages):
        writers = [s.name for s in STAGES if artifact in s.outputs]
        if writers and not any(w in before for w in writers):
            need = "' or '".join(writers)
            if need not in missing:
                missing.append(need)
    return missing


def source_stages() -> tuple[str, ...]:
    """The stages that read nothing of the run (``data``, ``tflite``): where a recipe starts."""
    return tuple(s.name for s in STAGES if not s.inputs)


def check_sources(name: str, stages: tuple[str, ...]) -> None:
    """A recipe starts with one stage that reads nothing (the table's sources: images for training,
    or a user's ``.tflite``) and has no other."""
    sources = source_stages()
    if not stages:
        raise ConfigError(f"recipe {name}: 'stages' is empty: stage {' or '.join(repr(s) for s in sources)} is required",
                          hint="list the stages, e.g. stages = [\"data\", \"model\", \"train\"]")
    if stages[0] not in sources:
        needs = producers_missing(stages[0], stages)
        if len(needs) == 1 and "'" not in needs[0]:
            raise ConfigError(f"recipe {name}: stage {needs[0]!r} is required", hint="add it to 'stages'")
        raise ConfigError(f"recipe {name}: the first stage {stages[0]!r} reads what no stage before it writes",
                          hint="start the recipe with " + " or ".join(repr(s) for s in sources))
    later = [s for s in stages[1:] if s in sources]
    if later:
        raise ConfigError(f"recipe {name}: stage {later[0]!r} starts a run of its own (it reads nothing of the run), "
                          f"but comes after {stages[0]!r}",
                          hint="a recipe starts from 'data' (images and training) or from 'tflite' (a .tflite file), "
                               "not both")


def _is_model_file(name: str) -> bool:
    return name.endswith(".keras") or name.endswith(".h5")


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"train.epochs=3"`` -> ``("train", "epochs", 3)``. The value is read as TOML (numbers, booleans,
    quoted strings, lists); anything that is not valid TOML is taken as a plain string (a path)."""
    key, sep, raw = text.partition("=")
    stage, dot, name = key.strip().partition(".")
    if not sep or not dot or not stage or not name or "." in name:
        raise ConfigError(f"--set expects stage.key=value, got {text!r}", hint="e.g. --set train.epochs=3")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return stage, name, value


def parse_overrides(items: list[str] | tuple[str, ...] | None) -> dict[str, dict[str, Any]]:
    """Several ``--set`` values as ``{"train": {"epochs": 3}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        stage, name, value = parse_override(item)
        if stage not in STAGE_BY_NAME:
            raise ConfigError(f"--set {item}: unknown stage {stage!r}", hint="known stages: " + ", ".join(STAGE_ORDER))
        out.setdefault(stage, {})[name] = value
    return out


def load_recipe(name_or_path: str | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Recipe:
    """Load a recipe (shipped name or TOML path), with ``overrides`` applied before validation."""
    path = resolve_recipe_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"recipe {path} is not valid TOML: {e}", hint="check the line it names") from None
    except OSError as e:
        raise ConfigError(f"cannot read recipe {path}: {e.strerror or e}", hint="check the file's permissions") from None
    for stage, values in (overrides or {}).items():
        table = doc.get(stage)
        if table is None:
            table = doc[stage] = {}
        if not isinstance(table, dict):
            break  # parse_recipe names the problem
        table.update(values)
    return parse_recipe(doc, name=path.stem, source=str(path))


def recipe_of_run(manifest: dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None,
                  name: str | None = None, stages: list[str] | None = None) -> Recipe:
    """The recipe a run recorded in its manifest, with ``overrides`` applied (and ``stages`` instead of
    its own, if given), validated again."""
    doc = manifest.get("recipe") or {}
    body = {"description": doc.get("description", ""), "stages": list(stages if stages is not None else doc.get("stages", [])),
            **json.loads(json.dumps(doc.get("configs", {})))}
    for stage, values in (overrides or {}).items():
        body.setdefault(stage, {}).update(values)
    return parse_recipe(body, name=name or doc.get("name", "run"), source=doc.get("source", ""))


def is_shipped(name: str) -> bool:
    """``name`` is a recipe shipped with picotflm (``int8``, ``int4``, ...)."""
    return (RECIPES_DIR / f"{name}.toml").is_file()


def recipe_or_run(name: str | None, runs_dir: Path, overrides: dict[str, dict[str, Any]] | None = None
                  ) -> tuple[Recipe, str | None]:
    """``(recipe, run name)``: a shipped recipe or a recipe file (run name None), else the recipe an
    existing run in ``runs_dir`` recorded (``picotflm build int8-board`` after ``--name int8-board``)."""
    manifest = Path(runs_dir) / name / "manifest.json" if name and "/" not in name and not name.endswith(".toml") else None
    if manifest is not None and manifest.is_file() and not (Path(name).exists() or is_shipped(name)):
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        return recipe_of_run(doc, overrides, name=(doc.get("recipe") or {}).get("name", name)), name
    return load_recipe(name, overrides), None


DEPLOY_STAGES = ("tflite", "verify", "render", "build", "measure")


def deploy_recipe(model: str, *, inputs: str | None = None, name: str | None = None,
                  overrides: dict[str, dict[str, Any]] | None = None) -> Recipe:
    """The recipe of ``picotflm deploy MODEL.tflite``: the flow entered at verify with the user's model
    (and inputs). The run is named after the file unless ``name`` is given; the C symbols too; the
    kernels are picotflm's unless they cannot take the model's convolutions (then pico-tflmicro's)."""
    import re

    from pipeline.stages.support import kernels_for, read_model_file

    path = Path(model).expanduser()
    data = read_model_file(path)
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).strip(".-_")[:64] or "model"
    run = name or (stem if stem[0].isalnum() else f"m{stem}")[:64]
    symbol = re.sub(r"\W", "_", path.stem, flags=re.ASCII)[:60] or "model"
    doc: dict[str, Any] = {
        "description": f"a user's .tflite ({path.name}): inspected, verified on host TFLM, rendered, built and measured",
        "stages": list(DEPLOY_STAGES),
        "tflite": {"path": str(path.resolve()), "inputs": str(Path(inputs).expanduser().resolve()) if inputs else ""},
        "render": {"model_name": symbol if not symbol[0].isdigit() else f"m_{symbol}"},
        "build": {"kernels": kernels_for(data)},
    }
    for stage, values in (overrides or {}).items():
        doc.setdefault(stage, {}).update(values)
    return parse_recipe(doc, name=run)
