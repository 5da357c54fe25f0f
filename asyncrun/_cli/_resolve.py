"""From what was typed to runs: ids, unique prefixes, ``project/id`` and store keys.

Every command taking run ids resolves them here, all before acting on any: an exact id is
read with one list request per project (per 1,000 ids); what matches no id is taken as a
prefix, and the project's runs are listed once to find what each prefix starts. A prefix
must name one run: two or more is an error listing them.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from click.shell_completion import CompletionItem

from .. import Client, Run, ValidationError
from .._core.refs import RunRef, matching_ids, parse_run_ref
from ._app import DEFAULT_PROJECT, CliError, client_of, project_given, resolve_project, settings_of
from ._output import local_time
from ._projects import embedded_db, projects_holding
from ._waiting import fetch_runs

LISTED_CANDIDATES = 5
"""Runs an ambiguous prefix's error names (the rest are counted)."""
PAGE = 1000


def parse_refs(texts: Sequence[str]) -> list[RunRef]:
    """The runs named, in order, once each.

    Raises:
        click.BadParameter: for text that names no run.
    """
    refs = []
    for text in texts:
        try:
            refs.append(parse_run_ref(text))
        except ValidationError as exc:
            raise click.BadParameter(str(exc), param_hint="ID") from None
    return list(dict.fromkeys(refs))


def _scan(client: Client, project: str, prefixes: Sequence[str]) -> dict[str, list[Run]]:
    """Every run of ``project`` each prefix starts (one listing for all of them)."""
    found: dict[str, list[Run]] = {prefix: [] for prefix in prefixes}
    for run in client.list_runs(project, page_size=PAGE):
        for prefix in prefixes:
            if run.id.startswith(prefix):
                found[prefix].append(run)
    return found


def _ambiguous(ref: RunRef, project: str, runs: list[Run]) -> str:
    shown = ", ".join(
        f"{run.id} ({run.status.state}, {local_time(run.metadata.created)})"
        for run in runs[:LISTED_CANDIDATES]
    )
    more = len(runs) - LISTED_CANDIDATES
    tail = f" and {more} more" if more > 0 else ""
    return (
        f"{ref.id!r} starts {len(runs)} runs in project {project!r}: {shown}{tail}; "
        "give more of the id"
    )


def _missing_hint(ctx: click.Context, ref: RunRef, project: str) -> str:
    if settings_of(ctx).endpoint is None and ref.project is None:
        elsewhere = projects_holding(embedded_db(), ref.id, exclude=project)
        if elsewhere:
            where = " and ".join(repr(p) for p in elsewhere)
            return f"a run starting {ref.id!r} is in project {where}: add -p {elsewhere[0]}"
        return (
            "if it is in another project, name it with -p PROJECT; `asyncrun projects` lists them"
        )
    return "if it is in another project, name it with -p PROJECT"


def resolve_runs(
    ctx: click.Context, texts: Sequence[str], project: str | None, *, metrics: bool = False
) -> list[Run]:
    """The runs ``texts`` name, in order, each once; nothing is changed before all resolve.

    Args:
        ctx: The command's context.
        texts: What was typed: ids, prefixes, ``project/id`` or store keys.
        project: The command's own ``--project`` (``None``: the global one).
        metrics: Read every metric value of the runs (found in listings, they carry only
            each metric's summary).

    Raises:
        click.UsageError: if a run names a project other than the one ``-p`` gave.
        CliError: if a run is missing or a prefix starts several runs.
    """
    refs = parse_refs(texts)
    default = resolve_project(ctx, project)
    explicit = project_given(ctx, project)
    target: dict[RunRef, str] = {}
    for ref in refs:
        if ref.project is not None and explicit and ref.project != default:
            raise click.UsageError(
                f"{ref.project}/{ref.id} is in project {ref.project!r}, but -p says {default!r}: "
                "drop one of them"
            )
        target[ref] = ref.project or default
    client = client_of(ctx)
    resolved: dict[RunRef, Run] = {}
    for name in dict.fromkeys(target.values()):
        mine = [ref for ref in refs if target[ref] == name]
        exact = fetch_runs(client, name, list(dict.fromkeys(ref.id for ref in mine)))
        for ref in mine:
            if ref.id in exact:
                resolved[ref] = exact[ref.id]
        pending = [ref for ref in mine if ref not in resolved]
        if not pending:
            continue
        found = _scan(client, name, list(dict.fromkeys(ref.id for ref in pending)))
        for ref in pending:
            runs = found[ref.id]
            ids = matching_ids(ref.id, [run.id for run in runs])
            chosen = [run for run in runs if run.id in ids]
            if len(chosen) > 1:
                raise CliError(_ambiguous(ref, name, chosen))
            if not chosen:
                raise CliError(
                    f"no run {ref.id!r} in project {name!r}", hint=_missing_hint(ctx, ref, name)
                )
            resolved[ref] = chosen[0]
    for ref, run in resolved.items():
        if ref.kind is not None and ref.kind != run.kind:
            raise CliError(
                f"run {run.id} of project {run.project!r} is a {run.kind} run, not {ref.kind}"
            )
    unique: dict[tuple[str, str], Run] = {}
    for ref in refs:
        run = resolved[ref]
        unique.setdefault((run.project, run.id), run)
    runs = list(unique.values())
    if metrics:
        for run in runs:
            run.refresh()
    return runs


def resolve_run(
    ctx: click.Context, text: str, project: str | None, *, metrics: bool = False
) -> Run:
    """The one run ``text`` names; see :func:`resolve_runs`."""
    (run,) = resolve_runs(ctx, [text], project, metrics=metrics)
    return run


COMPLETED_RUNS = 200
"""Newest runs of the project offered when completing an ID."""


def complete_run_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of an ID argument: the project's newest runs that ``incomplete``
    starts, each with its state and what ran (shown by zsh and fish).

    Completion parses the command line without running the root group, so the endpoint,
    token and project are read from the parsed parameters; any failure completes nothing.
    """
    root = ctx.find_root().params
    project = ctx.params.get("project") or root.get("project") or DEFAULT_PROJECT
    try:
        with Client(root.get("endpoint") or None, root.get("token") or None, timeout=5) as client:
            items = []
            for scanned, run in enumerate(client.list_runs(project, page_size=COMPLETED_RUNS)):
                if scanned >= COMPLETED_RUNS:
                    break
                if run.id.startswith(incomplete):
                    what = run.name if run.name not in (None, run.id) else run.kind
                    items.append(CompletionItem(run.id, help=f"{run.status.state} {what}"))
            return items
    except Exception:  # a completion must never print a traceback
        return []
