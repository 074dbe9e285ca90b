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
    for required in ("data", "model"):
        if required not in stages:
            raise ConfigError(f"recipe {name}: stage {required!r} is required", hint="add it to 'stages'")
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
    for later in ("prune", "cluster", "quantize", "convert", "verify", "render", "build", "measure"):
        if later in stages and "train" not in stages and not _is_model_file(configs["model"].name):
            raise ConfigError(
                f"recipe {name}: stage {later!r} needs a trained model, but there is no 'train' stage",
                hint="add 'train' to 'stages' or set model.name to a trained .keras file",
            )
    for dep in stages:
        for needs in producers_missing(dep, stages):
            raise ConfigError(f"recipe {name}: stage {dep!r} needs {needs!r} before it", hint=f"add {needs!r} to 'stages'")


def producers_missing(stage: str, stages: tuple[str, ...]) -> list[str]:
    """The stages that write an artifact ``stage`` always reads (its fixed inputs in the table) and that
    ``stages`` lacks before it; a Keras model or the dataset may come from several stages, so only
    fixed inputs with a single writer count."""
    before = stages[:stages.index(stage)]
    missing = []
    st = STAGE_BY_NAME[stage]
    for artifact in (st.inputs if isinstance(st.inputs, tuple) else ()):
        writers = [s.name for s in STAGES if artifact in s.outputs]
        if len(writers) == 1 and writers[0] not in before and writers[0] not in missing:
            missing.append(writers[0])
    return missing


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
