"""Typed configs: frozen dataclasses, loaded from TOML, overridden by dotted ``key=value`` pairs.

Every config in murmur is a frozen dataclass whose fields all have defaults and a one-line doc in
``field(metadata={"help": ...})``. ``load(Cls, path, overrides)`` reads a TOML file (tables map to
nested dataclasses), applies overrides such as ``train.lr=3e-4``, checks every key and type, and
suggests the closest key when one does not exist. ``dump_toml`` writes the resolved config so a
run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from murmur.errors import ConfigError
from murmur.io import atomic_open

T = TypeVar("T")


def knob(default: Any, help: str, **kwargs: Any) -> Any:
    """A config field with a default and a one-line doc (shown by ``--help`` and in docs)."""
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return dataclasses.field(default_factory=lambda: default, metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def optional_section(base: type, name: str, doc: str, unset: str = "the default's", **first: Any) -> type:
    """A frozen config section with every field of dataclass ``base``, each unset (``None``) unless given.

    For a section that overrides a named default field by field (``[model]``: a preset plus any
    ModelConfig field): the fields, types and help are declared once, on ``base``. ``first`` adds
    leading fields as ``name=(type, knob(...))``; :meth:`overrides` returns the fields that are set.
    """
    hints = _type_hints(base)
    fields: list[Any] = [(k, tp, f) for k, (tp, f) in first.items()]
    for f in dataclasses.fields(base):
        fields.append((f.name, hints[f.name] | None, knob(None, f"{f.metadata.get('help', '')} Unset = {unset}.")))

    def overrides(self: Any) -> dict[str, Any]:
        """The fields of ``base`` this section sets."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(base) if getattr(self, f.name) is not None}

    cls = dataclasses.make_dataclass(name, fields, frozen=True, namespace={"overrides": overrides, "__doc__": doc})
    cls.__module__ = base.__module__
    return cls


def given(overrides: typing.Sequence[str] | None = None, **flags: object) -> list[str]:
    """Config overrides from the command-line flags the user gave (those not None), then ``overrides``.

    Flags that set a config key default to None, so a key in ``--config`` takes effect unless the
    flag is given on the command line; the defaults themselves live in the config dataclass only.
    A ``key=value`` argument comes last, so it wins over a flag for the same key.
    """
    return [*(f"{key}={value}" for key, value in flags.items() if value is not None), *(overrides or [])]


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``, converting strings from the command line."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(tp, value, prefix=where + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if any(c in value for c in ".eE") and float(value).is_integer() \
                    else int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _suggest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict, checking keys and types."""
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {prefix + key!r}{_suggest(key, fields)}")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts and lists."""
    return dataclasses.asdict(cfg)


def apply_overrides(cls: type[T], data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings onto nested dict ``data`` (validated later by ``from_dict``)."""
    data = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        dotted, value = item.split("=", 1)
        parts = dotted.strip().split(".")
        node, node_cls = data, cls
        for i, part in enumerate(parts):
            fields = {f.name: f for f in dataclasses.fields(node_cls)}  # type: ignore[arg-type]
            if part not in fields:
                prefix = ".".join(parts[:i])
                full = [f"{prefix}.{k}" if prefix else k for k in fields]
                raise ConfigError(f"unknown config key {dotted!r}{_suggest(dotted, full)}")
            if i == len(parts) - 1:
                node[part] = value
            else:
                sub_cls = _type_hints(node_cls)[part]
                if not dataclasses.is_dataclass(sub_cls):
                    raise ConfigError(f"config key {'.'.join(parts[:i + 1])!r} is not a table")
                node = node.setdefault(part, {})
                node_cls = sub_cls
    return data


def _deepcopy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in d.items()}


PRESETS = Path(__file__).resolve().parent / "configs"


def presets() -> list[str]:
    """Names of the TOML presets shipped inside the package (``tiny-cpu``, ``llama-1b``, ...)."""
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def find_config(path: str | os.PathLike[str]) -> Path:
    """A config file: the path itself if it exists, else the packaged preset of that name.

    ``configs/tiny-cpu.toml``, ``tiny-cpu.toml`` and ``tiny-cpu`` all find the shipped preset when no
    such file is here, so the commands in the docs work from any directory and from an installed wheel.
    """
    p = Path(path)
    if p.is_file():
        return p
    name = p.name.removesuffix(".toml")
    if (PRESETS / f"{name}.toml").is_file() and (p.parent == Path(".") or p.parent.name == "configs"):
        return PRESETS / f"{name}.toml"
    raise ConfigError(f"{p}: config file not found (packaged presets: {', '.join(presets())})")


def load(cls: type[T], path: str | os.PathLike[str] | None = None,
         overrides: typing.Sequence[str] = ()) -> T:
    """Load ``cls`` from a TOML file (optional) plus dotted overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = find_config(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: invalid TOML: {e}") from None
    data = apply_overrides(cls, data, overrides)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        if path is not None:
            raise ConfigError(f"{path}: {e}") from None
        raise


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def dumps_toml(cfg: Any) -> str:
    """The config as TOML text (``None`` values are left out, so they load back as defaults)."""
    lines: list[str] = []

    def emit(d: dict[str, Any], table: str) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if table and scalars:
            lines.append(f"\n[{table}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in tables.items():
            emit(v, f"{table}.{k}" if table else k)

    emit(to_dict(cfg), "")
    return "\n".join(lines).lstrip("\n") + "\n"


def dump_toml(cfg: Any, path: str | os.PathLike[str]) -> None:
    """Write the resolved config atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(dumps_toml(cfg))


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every knob, for ``--help`` and the docs."""
    rows = []
    hints = _type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, prefix + f.name + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "")  # type: ignore[misc]
        rows.append((prefix + f.name, repr(default), f.metadata.get("help", "")))
    return rows


def knobs_text(cls: type) -> str:
    """Every knob of ``cls`` as aligned lines of key, default and help: what ``--knobs`` prints."""
    rows = describe(cls)
    key_w = max(len(k) for k, _, _ in rows) + 2
    default_w = min(max(len(d) for _, d, _ in rows), 24) + 2
    return "\n".join(f"{k:<{key_w}}{d:<{default_w}}{h}".rstrip() for k, d, h in rows)


def require_at_least(minimum: float, values: typing.Iterable[tuple[str, float]]) -> None:
    """Raise ``ConfigError`` naming the first ``(key, value)`` whose value is below ``minimum``."""
    for name, value in values:
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum} (got {value})")
