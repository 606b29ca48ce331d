"""Config dataclasses ↔ YAML, 1:1: every qscope config (the pipelines', SAE training's) loads through `ConfigBase`.

    cfg = ExpandConfig.from_yaml("configs/demo.yaml", overrides=["synthesis.n_samples=8"])
    print(cfg.to_yaml())

- Every YAML key is a dataclass field: an unknown key is an error that names it and the valid keys.
- A field typed `Literal[...]`, or a union holding one (`float | Literal["auto"]`), is checked at load: the error
  names the key, the allowed values and the value given.
- `check()` holds what a type cannot say (ranges, relations between fields); it runs once a section is built.
- `overrides` are `dotted.key=value` strings, the command line's `--set`: applied to the YAML before anything is
  checked, values read as YAML scalars (`8`, `0.5`, `true`, `null`, `[1, 2]`), unknown keys refused.
- A renamed key keeps loading under its old spelling (`renamed_keys`), with a DeprecationWarning.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import yaml

from qscope.errors import InputError, QscopeError

Override = str | tuple[str, Any]
"""`"a.b=value"` (the value read as YAML), or `("a.b", value)` taken as it is (a command-line flag's value)."""


class ConfigBase:
    """from_dict / from_yaml / to_dict / to_yaml for nested config dataclasses (subclasses are `@dataclass`es)."""

    config_error: ClassVar[type[QscopeError]] = InputError
    """What a bad value raises."""
    renamed_keys: ClassVar[dict[str, str]] = {}
    """Old key -> its dotted new key (relative to this section): the old spelling loads, with a warning."""
    ignored_keys: ClassVar[tuple[str, ...]] = ()
    """Top-level YAML keys that select rather than configure (a pipeline config's `pipeline:`)."""

    def __post_init__(self) -> None:
        # Choices are checked however the object is made (a YAML load checks them earlier, naming the full key).
        for name, hint in _choice_fields(type(self)):
            _checked_value(getattr(self, name), hint, getattr(self, "_key_prefix", "") + name, self.config_error)

    def check(self) -> None:
        """Checks a type cannot express; raise `self.invalid(field, why)`. Runs after the section is built."""

    def invalid(self, key: str, why: str) -> QscopeError:
        """An error naming `key` by its full dotted path (e.g. `mining.background_size must be > 0, got 0`)."""
        return self.config_error(f"{getattr(self, '_key_prefix', '')}{key} {why}")

    @classmethod
    def from_dict(cls, data: dict | None, source: str = "", overrides: Iterable[Override] = ()):
        """Build from a mapping (`source` names where it came from in errors), after applying `overrides`."""
        data = apply_overrides(cls, {} if data is None else data, overrides)
        try:
            return _load(cls, data, "")
        except QscopeError as exc:
            if source:
                raise type(exc)(f"{source}: {exc}") from None
            raise

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Iterable[Override] = ()):
        data = read_yaml(path, cls.config_error)
        for key in cls.ignored_keys:
            data.pop(key, None)
        return cls.from_dict(data, Path(path).name, overrides)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))  # type: ignore[call-overload]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def read_yaml(path: str | Path, error: type[QscopeError] = InputError) -> dict:
    """The one YAML reader of config files: a mapping, or an error naming the file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise error(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not valid UTF-8") from None
    if data is None:
        raise error(f"{path}: config is empty")
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


# --- loading ------------------------------------------------------------------------------------------------
def _load(cls, data: Any, prefix: str):
    where = prefix.rstrip(".") or cls.__name__
    if not isinstance(data, dict):
        raise cls.config_error(f"{where}: expected a mapping, got {type(data).__name__}")
    data = _migrate_renamed(cls, dict(data), prefix)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise cls.config_error(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        value, hint, key = data[name], hints[name], prefix + name
        section = _section_class(hint)
        if section is not None and value is not None:
            kwargs[name] = _load(section, _over_default(cls, name, section, value, key + "."), key + ".")
        else:
            kwargs[name] = _checked_value(value, hint, key, cls.config_error)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise cls.config_error(f"{where}: {exc}") from None
    object.__setattr__(obj, "_key_prefix", prefix)  # lets check() name keys by their full path (frozen ones too)
    obj.check()
    return obj


def _over_default(cls, name: str, section: type, value: Any, prefix: str) -> Any:
    """A section given in part keeps the rest of the field's own default, not the section class's: classify's
    `signatures: {top_n: 128}` stays sum-pooled, `resources: {light: {batch_size: 512}}` keeps light's 0.25 CPU."""
    if not isinstance(value, dict):
        return value
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    if not isinstance(default, ConfigBase):
        return value
    return _deep_merge(default.to_dict(), _migrate_renamed(section, dict(value), prefix))


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _migrate_renamed(cls, data: dict, prefix: str) -> dict:
    for old, new in cls.renamed_keys.items():
        if old not in data:
            continue
        warnings.warn(f"config key {prefix}{old} is deprecated: use {prefix}{new}", DeprecationWarning, stacklevel=4)
        *parents, leaf = new.split(".")
        node = data
        for part in parents:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        if leaf in node:
            raise cls.config_error(f"{prefix}{old} and {prefix}{new} are the same setting: give only {prefix}{new}")
        node[leaf] = data.pop(old)
    return data


def _section_class(hint) -> type | None:
    """The ConfigBase class of a nested section (`Sub` or `Sub | None`), else None."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, ConfigBase):
            return candidate
    return None


@functools.cache
def _choice_fields(cls) -> tuple:
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, hints[f.name])
        for f in dataclasses.fields(cls)
        if any(typing.get_origin(m) is Literal for m in _members(hints[f.name]))
    )


def _members(hint) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)


def _checked_value(value: Any, hint, key: str, error: type[QscopeError]) -> Any:
    members = _members(hint)
    choices = [c for m in members if typing.get_origin(m) is Literal for c in typing.get_args(m)]
    if choices and value not in choices:
        others = [m for m in members if typing.get_origin(m) is not Literal]
        if not any(_is_a(value, m) for m in others):
            alternatives = "".join(f" or {_KIND_NAMES.get(typing.get_origin(m) or m, str(m))}" for m in others)
            raise error(f"{key} must be one of {choices}{alternatives}, got {value!r}")
    if isinstance(value, list) and any(typing.get_origin(m) is tuple for m in members):
        return tuple(value)  # YAML has no tuples
    return value


_KIND_NAMES = {
    float: "a number",
    int: "an integer",
    str: "a string",
    bool: "true/false",
    list: "a list",
    tuple: "a list",
    dict: "a mapping",
    type(None): "null",
}


def _is_a(value: Any, hint) -> bool:
    kind = typing.get_origin(hint) or hint
    if kind is type(None):
        return value is None
    if kind in (float, int):
        return isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if kind is tuple:
        return isinstance(value, (list, tuple))
    return isinstance(value, kind) if isinstance(kind, type) else True


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- overrides (--set) --------------------------------------------------------------------------------------
def apply_overrides(cls, data: dict, overrides: Iterable[Override]) -> dict:
    """`data` with each override set at its dotted key (a copy; `data` is left alone)."""
    overrides = list(overrides)
    if not overrides:
        return data
    data = copy.deepcopy(data)
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        hint = _field_hint(cls, key, item)
        if (
            isinstance(item, str)
            and not isinstance(value, str)
            and value is not None
            and str in _members(hint)
            and not any(_is_a(value, m) for m in _members(hint) if m is not str)
        ):
            value = item.partition("=")[2].strip()  # `--set out=2024` names a path, not a number
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`"a.b=value"` → ("a.b", value read as a YAML scalar or flow collection)."""
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise InputError(f"--set {text!r}: expected key=value (e.g. --set synthesis.n_samples=8)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML: the text itself
    return key.strip(), value


def _field_hint(cls, key: str, item: Override):
    """The type of the field at dotted `key` under `cls`; an unknown key is an error naming the valid ones."""
    hint: Any = cls
    path = []
    for part in key.split("."):
        section = _section_class(hint)
        if section is None:
            if typing.get_origin(hint) is dict or hint is dict:
                return Any  # free-form mapping (e.g. synthesis.engine_kwargs): any key below it
            raise InputError(f"--set {_shown(item)}: {'.'.join(path)} is a value, not a section")
        names = {f.name for f in dataclasses.fields(section) if f.init}
        if part in section.renamed_keys:
            hint = _field_hint(section, section.renamed_keys[part], item)
        elif part in names:
            hint = typing.get_type_hints(section)[part]
        else:
            where = f" under {'.'.join(path)}" if path else ""
            raise InputError(f"--set {_shown(item)}: unknown key {part!r}{where}; valid keys: {sorted(names)}")
        path.append(part)
    return hint


def _shown(item: Override) -> str:
    return item if isinstance(item, str) else f"{item[0]}={item[1]!r}"
