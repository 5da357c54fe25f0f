"""What ``asyncrun run`` starts: ``--set key=value`` assignments and run files.

``--set`` values are read as YAML scalars (``0.1`` is a float, ``true`` a bool, ``null``
None, ``"12"`` a string); ``[a, b]`` and ``{k: v}`` are flow lists and mappings; anything
else is kept as the text given. Dotted keys nest: ``parameters.lr=0.1`` sets
``spec["parameters"]["lr"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

_NULLS = frozenset({"null", "Null", "NULL", "~"})
_INT64 = 2**63


def _yaml() -> YAML:
    return YAML(typ="safe", pure=True)


def _plain(value: Any) -> bool:
    """Whether a parsed flow value holds only what JSON carries (no dates, no NaN)."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def parse_value(text: str) -> Any:
    """The value of one ``--set key=value``: a YAML scalar, a flow collection, or the text.

    Raises:
        click.BadParameter: for a number JSON cannot carry (NaN, infinity, beyond 64 bits).
    """
    if not text.strip():
        return text
    try:
        value = _yaml().load(text)
    except YAMLError:
        return text
    if value is None:
        return None if text.strip() in _NULLS else text  # "#tag" is a comment to YAML
    if isinstance(value, str):
        return value  # unquoted: '"12"' is the string 12
    if isinstance(value, bool | int | float):
        if not _plain(value):
            raise click.BadParameter(
                f"{text!r} is not a number JSON can carry; quote it to keep it as text",
                param_hint="'--set'",
            )
        return value
    if isinstance(value, list | dict) and text.lstrip()[:1] in ("[", "{") and _plain(value):
        return value
    return text  # "a: b", "- x", dates...: the text as given


def parse_assignment(item: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and parsed value.

    Raises:
        click.BadParameter: if it is not ``KEY=VALUE`` with a non-empty dotted key.
    """
    key, sep, raw = item.partition("=")
    path = key.strip().split(".")
    if not sep or not all(part.strip() for part in path):
        raise click.BadParameter(
            f"{item!r} is not KEY=VALUE (a dotted KEY nests: parameters.lr=0.1)",
            param_hint="'--set'",
        )
    return [part.strip() for part in path], parse_value(raw)


def assign(spec: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``spec[path[0]][path[1]]... = value``, making the mappings on the way.

    Raises:
        click.BadParameter: if a key on the way holds something other than a mapping.
    """
    target = spec
    for depth, part in enumerate(path[:-1]):
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise click.BadParameter(
                f"cannot set {'.'.join(path)}: {where} holds {child!r}, not a mapping",
                param_hint="'--set'",
            )
        target = child
    target[path[-1]] = value


def parse_assignments(
    ctx: click.Context, param: click.Parameter, items: tuple[str, ...]
) -> list[tuple[list[str], Any]]:
    """Click callback of ``--set``: every assignment parsed, in order."""
    return [parse_assignment(item) for item in items]


_FILE_KEYS = frozenset(
    {"kind", "id", "key", "project", "name", "labels", "description", "user", "spec"}
    | {"metadata", "status"}
)


@dataclass
class RunTemplate:
    """What a run file says about a run to start (never its id, state or history)."""

    kind: str | None = None
    project: str | None = None
    name: str | None = None
    labels: list[str] = field(default_factory=list)
    description: str | None = None
    user: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)


def _field(data: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise click.BadParameter(
            f"{where}: {key} must be a {kind.__name__}, got {type(value).__name__}",
            param_hint="'-f'",
        )
    return value


def read_template(path: Path) -> RunTemplate:
    """Read a run file: a short form (``kind``, ``spec``, optional ``name``, ``labels``,
    ``description``, ``project``, ``user``) or a record written by ``asyncrun export``.

    Of an exported record only what describes the work is taken: its id, state, times and
    metrics are not, so the file starts a new run.

    Raises:
        click.BadParameter: if the file is not such a YAML mapping.
    """
    try:
        data = _yaml().load(path.read_text(encoding="utf-8"))
    except (YAMLError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path}: not a YAML document: {exc}", param_hint="'-f'") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of run fields", param_hint="'-f'")
    unknown = sorted(str(k) for k in data if k not in _FILE_KEYS)
    if unknown:
        raise click.BadParameter(
            f"{path}: unknown key(s) {', '.join(unknown)}; a run file has "
            f"{', '.join(sorted(_FILE_KEYS))}",
            param_hint="'-f'",
        )
    metadata = _field(data, "metadata", dict, path) or {}
    labels = data.get("labels", metadata.get("labels")) or []
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise click.BadParameter(f"{path}: labels must be a list of strings", param_hint="'-f'")
    name = _field(data, "name", str, path)
    if name is not None and name == data.get("id"):
        name = None  # the default name of the exported run (its id): the new run gets its own
    description = data.get("description", metadata.get("description"))
    if description is not None and not isinstance(description, str):
        raise click.BadParameter(f"{path}: description must be a string", param_hint="'-f'")
    return RunTemplate(
        kind=_field(data, "kind", str, path),
        project=_field(data, "project", str, path) or metadata.get("project"),
        name=name,
        labels=list(labels),
        description=description,
        user=_field(data, "user", str, path),
        spec=dict(_field(data, "spec", dict, path) or {}),
    )
