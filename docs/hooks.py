"""mkdocs hooks: parts of pages generated from their source at every build.

A page holds a marker comment where generated content goes; the build replaces it, so the
site can never show a stale copy:

- ``<!-- generated: cli-reference -->``: the ``--help`` of every ``asyncrun`` command, from
  click (``tests/test_docs.py`` checks each one against the real ``asyncrun ... --help``);
- ``<!-- generated: http-operations -->``: the operations of the HTTP API, from the OpenAPI
  document the server serves at ``/openapi.json``;
- ``<!-- generated: error-classes -->``: the public error classes of ``asyncrun``, their
  bases, ``code`` and HTTP status;
- ``<!-- generated: hostile-input-tables -->``: the hostile-input tables, from
  ``tests/bad_input/_table.py`` (the same rows the tests run; ``python -m
  tests.bad_input._table`` prints them).

A generator that fails fails the build. The API reference's docstrings use a few Sphinx
roles (``:class:`~asyncrun.Run```); mkdocstrings renders them as text, so
:func:`on_page_content` shows them as code, as Sphinx would.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent
HELP_WIDTH = 80
"""Columns the CLI reference is wrapped at (``COLUMNS=82`` in a terminal: click keeps 2)."""


def _load_by_path(name: str, path: Path) -> Any:
    # By path, not ``import tests...``: a ``tests`` package installed by some other
    # distribution must not shadow the repository's.
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def hostile_input_tables() -> str:
    """The hostile-input tables, rendered by ``tests/bad_input/_table.py``."""
    table = _load_by_path("_asyncrun_docs_hostile_table", ROOT / "tests/bad_input/_table.py")
    return str(table.markdown())


def cli_commands() -> Iterator[tuple[list[str], str]]:
    """``(path, help text)`` of ``asyncrun`` and every subcommand, depth first, as listed."""
    from asyncrun._cli import cli

    def walk(
        command: click.Command, path: list[str], parent: click.Context | None
    ) -> Iterator[tuple[list[str], str]]:
        settings: dict[str, Any] = {**command.context_settings, "terminal_width": HELP_WIDTH}
        ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
        yield path[1:], command.get_help(ctx)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(sub, [*path, name], ctx)

    yield from walk(cli, ["asyncrun"], None)


def cli_reference() -> str:
    """One section per command: its ``--help``, as the command prints it."""
    sections = []
    for path, text in cli_commands():
        title = " ".join(["asyncrun", *path])
        level = "##" if len(path) <= 1 else "###"
        sections.append(f"{level} `{title}`\n\n```text\n{text}\n```\n")
    return "\n".join(sections)


def http_operations() -> str:
    """A table of the HTTP API's operations, from the server's OpenAPI document."""
    from asyncrun.server._openapi import openapi_document

    lines = ["| method | path | what | statuses |", "|---|---|---|---|"]
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue  # path-level parameters
            summary = str(operation.get("summary", "")).replace("|", "\\|")
            statuses = ", ".join(sorted(operation["responses"]))
            lines.append(f"| `{method.upper()}` | `{path}` | {summary} | {statuses} |")
    return "\n".join(lines)


def error_classes() -> str:
    """A table of the public error classes: name, bases, ``code``, HTTP status."""
    import asyncrun

    errors = [
        value
        for name in asyncrun.__all__
        if isinstance(value := getattr(asyncrun, name), type)
        and issubclass(value, asyncrun.AsyncRunError)
    ]
    errors.sort(key=lambda cls: ([c.__name__ for c in reversed(cls.__mro__)], cls.__name__))
    lines = ["| error | is a | `code` | HTTP status |", "|---|---|---|---|"]
    for cls in errors:
        bases = ", ".join(f"`{base.__name__}`" for base in cls.__bases__)
        anchor = f"asyncrun.{cls.__name__}"
        lines.append(
            f"| [`{cls.__name__}`](#{anchor}) | {bases} | `{cls.code}` | {cls.status_code} |"
        )
    return "\n".join(lines)


GENERATORS: dict[str, Callable[[], str]] = {
    "<!-- generated: cli-reference -->": cli_reference,
    "<!-- generated: hostile-input-tables -->": hostile_input_tables,
    "<!-- generated: http-operations -->": http_operations,
    "<!-- generated: error-classes -->": error_classes,
}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace every generator marker of a page with its generated content."""
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown


_ROLE = re.compile(r":(?:class|meth|func|attr|mod|exc|data|obj):<code>(~?)([^<]*)</code>")


def _unrole(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Render Sphinx roles left in docstrings as Sphinx shows them: ``~a.b.C`` as ``C``."""
    return _ROLE.sub(_unrole, html)
