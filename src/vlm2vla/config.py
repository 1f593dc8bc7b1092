"""Typed configs: dataclasses filled from a YAML file and dotted `key=value` overrides.

Every stage has a frozen dataclass config. `load_config` starts from its defaults, merges a YAML file
(optional) and then command-line overrides such as `sim.image_size=96 tasks=[reach-v3,push-v3]`.
OmegaConf does the merging and type checking; this module only turns its errors into messages that
name the offending key or file, and writes the resolved config back out so every run can be re-run.

Named configs live in the repository's configs/ folder; `--config demo/collect` finds
`configs/demo/collect.yaml` there, and any other value is read as a path.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vlm2vla.fileio import atomic_write_text

T = TypeVar("T")

# configs/ sits at the repository root, beside src/.
CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be turned into the stage's config."""


# configs/experiments/ holds experiment configs (cells of several stages, read by their runner), not stage configs
EXPERIMENTS_DIR = "experiments"


def named_configs() -> list[str]:
    """Names of the stage configs shipped in configs/, e.g. "demo/collect" (experiment configs left out)."""
    if not CONFIGS_DIR.is_dir():
        return []
    paths = (p.relative_to(CONFIGS_DIR) for p in CONFIGS_DIR.rglob("*.yaml"))
    return sorted(str(p.with_suffix("")) for p in paths if p.parts[0] != EXPERIMENTS_DIR)


def resolve_config_path(name_or_path: str | Path) -> Path:
    """Find a config by name under configs/ or as a path; raise ConfigError with close names if neither."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = CONFIGS_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    names = named_configs()
    close = difflib.get_close_matches(str(name_or_path), names, n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"No config file '{name_or_path}' (looked for it as a path and as {named}).{hint} "
        f"Shipped configs: {', '.join(names) or 'none'}."
    )


def load_config(cls: type[T], config: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build `cls` from its defaults, an optional YAML file and dotted overrides, in that order.

    Args:
        cls: the stage's config dataclass.
        config: a config name under configs/ or a path to a YAML file; None uses the defaults.
        overrides: `key=value` strings; nested fields use dots (`sim.image_size=64`).

    Returns:
        An instance of `cls`; its __post_init__ checks have run.

    Raises:
        ConfigError: naming the file or the key that is wrong and what was expected.
    """
    merged = OmegaConf.structured(cls)
    OmegaConf.set_readonly(merged, False)
    if config is not None:
        path = resolve_config_path(config)
        data = _read_yaml(path)
        for key in _dotted_keys(cls, OmegaConf.to_container(data)):
            _check_key(cls, key, where=f"config file {path}")
        merged = _merge(merged, data, where=f"config file {path}")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override '{item}' is not of the form key=value (e.g. sim.image_size=64).")
        _check_key(cls, item.split("=", 1)[0].strip(), where=f"override '{item}'")
        merged = _merge(merged, OmegaConf.from_dotlist([item]), where=f"override '{item}'")
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"Invalid {cls.__name__}: {_first_line(err)}") from err
    except ValueError as err:  # a __post_init__ check: its message already names the field
        raise ConfigError(f"Invalid {cls.__name__}: {err}") from err


def save_config(cfg: Any, path: Path) -> None:
    """Write a resolved config as YAML that `load_config(type(cfg), path)` reads back to an equal config."""
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON-serialisable dict of a config dataclass (tuples become lists)."""
    # The JSON round trip turns tuples into lists, so a config compares equal to one read from a manifest.
    return json.loads(json.dumps(OmegaConf.to_container(OmegaConf.structured(cfg))))


def choice(*options: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that accepts only `options`: a string field, or a tuple of strings when `default`
    is a tuple. The default is the first option unless given. `--help` lists the options and
    `check_choices` enforces them, so the accepted values are written down once.

        init: str = choice("pretrained", "scratch")
        freeze: tuple[str, ...] = choice("vision", "connector", default=())
    """
    value = options[0] if default is dataclasses.MISSING else default
    return dataclasses.field(default=value, metadata={CHOICES: tuple(options)})


CHOICES = "choices"


def field_choices(f: dataclasses.Field) -> tuple[str, ...]:
    """The options a `choice` field accepts (empty for other fields)."""
    return tuple(f.metadata.get(CHOICES, ()))


def check_choices(cfg: Any) -> None:
    """Check every `choice` field of a config dataclass (call it from __post_init__).

    Raises:
        ValueError: naming the field, the value, the accepted options and the closest one.
    """
    for f in dataclasses.fields(cfg):
        options = field_choices(f)
        if not options:
            continue
        value = getattr(cfg, f.name)
        for item in (value,) if isinstance(value, str) else tuple(value):
            if item not in options:
                close = difflib.get_close_matches(str(item), options, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{f.name}={item!r} is not one of {', '.join(options)}{hint}")


def field_comments(cls: type) -> dict[str, str]:
    """The comment written above each field of a dataclass (and of its dataclass bases), by field name.

    The comments are the fields' documentation (as in LeRobot's and openpi's configs); reading them from
    the source keeps `--help` and the code saying the same thing.
    """
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment replaces its base's
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):  # no source (e.g. a class built at run time)
            continue
        body = ast.parse(textwrap.dedent("".join(lines))).body[0]
        for node in getattr(body, "body", []):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                block = []
                for line in reversed(lines[:node.lineno - 1]):
                    if not line.strip().startswith("#"):
                        break
                    block.append(line.strip().lstrip("#").strip())
                if block:
                    comments[node.target.id] = " ".join(reversed(block))
    return comments


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """One leaf field of a config, as `--help` shows it."""

    # dotted name, e.g. "policy.head"
    name: str
    # the annotation, e.g. "str"
    type: str
    # repr of the default
    default: str
    # the comment written above the field ("" when there is none)
    help: str
    # accepted values of a `choice` field (empty for other fields)
    choices: tuple[str, ...] = ()


def describe_fields(cls: type, prefix: str = "") -> list[FieldDoc]:
    """Every leaf field of a config dataclass (nested configs flattened to dotted names), for `--help`."""
    rows = []
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        default = _field_default(f)
        if dataclasses.is_dataclass(default):
            rows.extend(describe_fields(type(default), prefix=name + "."))
            continue
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append(FieldDoc(name, str(type_name), repr(default), comments.get(f.name, ""), field_choices(f)))
    return rows


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "<required>"


def field_paths(cls: type, prefix: str = "") -> list[str]:
    """Dotted names of every field of a config dataclass, nested configs included (and their own names)."""
    out = []
    for f in dataclasses.fields(cls):
        out.append(prefix + f.name)
        default = _field_default(f)
        if dataclasses.is_dataclass(default):
            out.extend(field_paths(type(default), prefix + f.name + "."))
    return out


def _nested_class(cls: type, name: str) -> type | None:
    """The config class of field `name` of `cls` when it is a nested config; None for a leaf."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = _field_default(f)
    return type(default) if dataclasses.is_dataclass(default) else None


def _dotted_keys(cls: type, data: Any, prefix: str = "") -> list[str]:
    """The dotted keys a YAML mapping sets, descending only into the config's nested configs."""
    keys = []
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in (data or {}).items():
        nested = _nested_class(cls, key) if key in names else None
        if nested is not None and isinstance(value, dict):
            keys.extend(_dotted_keys(nested, value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _check_key(cls: type, key: str, where: str) -> None:
    """Refuse a key that names no field, saying where it moved (`moved_fields`) or what is closest.

    Raises:
        ConfigError: naming the key, where it came from, and the field(s) meant.
    """
    owner: type | None = cls
    for part in key.split("."):
        if owner is None:
            return  # inside a leaf field of mapping type (e.g. policy.kwargs): anything goes
        if part not in {f.name for f in dataclasses.fields(owner)}:
            break
        owner = _nested_class(owner, part)
    else:
        return
    moved = getattr(cls, "moved_fields", {})
    paths = field_paths(cls)
    if key in moved:
        guesses = [moved[key]]
    else:
        leaf = key.rsplit(".", 1)[-1]
        guesses = [p for p in paths if p.rsplit(".", 1)[-1] == leaf] or difflib.get_close_matches(key, paths, n=3)
    hint = f"; did you mean {' or '.join(repr(g) for g in guesses)}?" if guesses else ""
    raise ConfigError(f"In {where}: {cls.__name__} has no field {key!r}{hint} (`--help` lists every field)")


def _read_yaml(path: Path) -> Any:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Config file {path}{line} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of field names, not {type(data).__name__}.")
    return OmegaConf.create(data)


def _merge(base: Any, update: Any, where: str) -> Any:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as err:
        raise ConfigError(f"In {where}: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    # OmegaConf appends full_key/reference_type lines; the first line already names the key and the fix.
    lines = str(err).strip().splitlines()
    key = next((ln.strip() for ln in lines if ln.strip().startswith("full_key:")), "")
    return lines[0] + (f" ({key})" if key else "")
