"""The keys of an experiment file, with their types, defaults and comments, and a run's
resolved config annotated with them: `lcompress config`, `lcompress train --help` and
`lcompress train CONFIG --print-config`.

The comments are the ones written above each field of the task's schema dataclass (the
schema is the single place a key is documented), read from its source.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from functools import lru_cache

import yaml
from omegaconf import DictConfig, OmegaConf

from .config import nested_schema


@dataclass
class KeyHelp:
    key: str  # dotted
    type: str
    default: object
    comment: str
    group: bool  # a nested block (data:, model:) rather than a value


@lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """{field: comment} from the `# ...` lines right above each field of a dataclass (and
    its bases), or a comment at the end of the field's line."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        above: list[str] = []
        for line in lines[1:]:
            stripped = line.strip()
            if stripped.startswith("#"):
                above.append(stripped.lstrip("#").strip())
                continue
            match = re.match(r"\s+(\w+)\s*:[^=]*(=.*)?$", line)
            if match and not stripped.startswith(("def ", "@")):
                inline = line.split("  #", 1)[1].strip() if "  #" in line else ""
                text = " ".join(above + ([inline] if inline else []))
                if text:
                    comments[match.group(1)] = text
            above = []
    return comments


def _type_name(f: dataclasses.Field) -> str:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"Any": "any", "dict": "mapping", "list": "list"}.get(kind, kind)


def key_help(schema: type, prefix: str = "") -> list[KeyHelp]:
    """Every key of `schema`, depth first, in declaration order."""
    found = []
    comments = field_comments(schema)
    for f in dataclasses.fields(schema):
        dotted = f"{prefix}{f.name}"
        nested = nested_schema(f)
        if nested is not None:
            # A docstring of its own (dataclasses give undocumented classes their signature).
            own = nested.__doc__ if nested.__doc__ and not nested.__doc__.startswith(nested.__name__ + "(") else ""
            doc = comments.get(f.name) or inspect.cleandoc(own).split("\n\n")[0].replace("\n", " ")
            found.append(KeyHelp(dotted, "group", None, doc, True))
            found += key_help(nested, dotted + ".")
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        found.append(KeyHelp(dotted, _type_name(f), default, comments.get(f.name, ""), False))
    return found


def _inline(value) -> str:
    """A value as YAML on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[:-4].strip() if text.endswith("\n...") or text.endswith(" ...") else text


def keys_reference(schema: type) -> str:
    """One block per key: `key  (type, default X)` and its comment, indented."""
    lines = []
    for item in key_help(schema):
        if item.group:
            lines.append(f"\n{item.key}:" + (f"  {item.comment}" if item.comment else ""))
            continue
        lines.append(f"  {item.key}  ({item.type}, default {_inline(item.default)})")
        if item.comment:
            lines.append(f"      {item.comment}")
    return "\n".join(lines).lstrip("\n")


def annotated_yaml(cfg: DictConfig, schema: type) -> str:
    """The resolved config as YAML, each key preceded by its comment and type: what the run
    will use, with the documentation of every value beside it."""
    helps = {h.key: h for h in key_help(schema)}
    values = OmegaConf.to_container(cfg, resolve=True)
    out: list[str] = []

    def walk(tree: dict, prefix: str, indent: str) -> None:
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            item = helps.get(dotted)
            if item is not None and item.comment:
                out.append(f"{indent}# {item.comment}" + ("" if item.group else f" [{item.type}]"))
            if isinstance(value, dict) and (item is None or item.group or value):
                if not value:
                    out.append(f"{indent}{key}: {{}}")
                    continue
                out.append(f"{indent}{key}:")
                walk(value, dotted + ".", indent + "  ")
            else:
                out.append(f"{indent}{key}: {_inline(value)}")

    walk(values, "", "")
    return "\n".join(out) + "\n"
