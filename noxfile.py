"""Development sessions: ``nox`` runs lint, typing, tests and docs; ``nox -s bench`` benchmarks.

``nox -s digitalhub`` runs the real DigitalHub SDK against ``asyncrun server`` (heavy: its own
venv of about 800 MB; ``.ci/run`` runs it after the default sessions).
``nox -s ui`` runs the dashboard's tests in a real browser; ``nox -s vendor_ui`` refreshes the
dashboard's front-end packages from the npm registry.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typing", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite: asyncio and Trio; embedded, a server on SQLite, one on PostgreSQL.

    PostgreSQL is a throwaway cluster of the machine's server binaries (tests/_postgres.py;
    ``.ci/run`` installs Debian's ``postgresql`` when they are missing).
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff==0.17.6")  # pinned: a new ruff must not fail CI by surprise
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy==2.4.1", "types-psutil")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs, strict: any warning fails) into site/."""
    session.install(
        "-e",
        ".",
        "mkdocs>=1.6,<2",
        "mkdocs-material>=9.5,<10",
        "mkdocstrings[python]>=1,<2",
        "mkdocstrings-python>=2,<3",
        "ruff==0.17.6",  # mkdocstrings formats signatures with it
    )
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        "site",
        *session.posargs,
        # Material's banner about its end of life is not about this site; it would read as a
        # warning in every CI log.
        env={"NO_MKDOCS_2_WARNING": "1"},
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks and rewrite benchmarks/RESULTS.md."""
    session.install("-e", ".[server]")
    session.run("python", "benchmarks/run.py", *session.posargs, env={"PYTHONHASHSEED": "0"})


@nox.session(python=PYTHON)
def bench_growth(session: nox.Session) -> None:
    """Growth factors (10x runs, 10x history, 10x waits); rewrite benchmarks/RESULTS.md.

    Writes benchmarks/results/growth.json. Arguments after ``--`` go to run.py (e.g.
    ``--scale 0.1``).
    """
    session.install("-e", ".[server]")
    session.run(
        "python", "benchmarks/run.py", "--out", "growth", *session.posargs,
        env={"PYTHONHASHSEED": "0"},
    )  # fmt: skip


@nox.session(python=PYTHON)
def bench_postgres(session: nox.Session) -> None:
    """SQLite, PostgreSQL and two replicas on the same workloads; rewrite RESULTS.md.

    Starts a PostgreSQL cluster of the machine's binaries (see tests/_postgres.py). Writes
    benchmarks/results/postgres.json. Arguments after ``--`` go to run.py (``--scale 0.2``).
    """
    session.install("-e", ".[postgres]")
    session.run(
        "python", "benchmarks/run.py", "--out", "postgres", *session.posargs,
        env={"PYTHONHASHSEED": "0"},
    )  # fmt: skip


@nox.session(python=PYTHON)
def bench_peers(session: nox.Session) -> None:
    """Run asyncrun and MLflow 3.x on the same workloads; regenerate benchmarks/RESULTS.md.

    Two environments, so neither side's dependencies can change the other's. This session's
    venv holds MLflow (the full package: mlflow-skinny has no tracking server) and runs
    benchmarks/peers/run.py, which alternates, once per repetition, the MLflow side (in this
    venv) and the asyncrun side, run with the interpreter of a plain venv nested in this one
    (``asyncrun-venv``: created once, ``pip install -e .[server]`` on every invocation so it
    tracks the work tree; removed with this venv). Each side starts its own server on loopback
    and stops it. run.py writes benchmarks/results/peers.json, then benchmarks/_report.py
    renders RESULTS.md from it and the last ``nox -s bench``'s results/latest.json: every ratio
    to MLflow in it was measured in this invocation. Arguments after ``--`` go to run.py (e.g.
    ``--scale 0.1 --no-write``).
    """
    session.install("mlflow>=3,<4")
    venv = Path(session.virtualenv.location) / "asyncrun-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        session.run_install("python", "-m", "venv", str(venv))
    session.run_install(str(python), "-m", "pip", "install", "-q", "-e", ".[server]", external=True)
    session.run(
        "python", "benchmarks/peers/run.py", "--asyncrun-python", str(python), *session.posargs
    )


DIGITALHUB = ("digitalhub==0.15.11", "digitalhub-runtime-python==0.15.2")
"""The DigitalHub SDK release the DHCore API was built against (docs/guides/digitalhub.md)."""


@nox.session(python=PYTHON)
def digitalhub(session: nox.Session) -> None:
    """The DigitalHub SDK's own flow against a real ``asyncrun server``, in both modes.

    Two environments, so neither side's dependencies can change the other's: this session's
    venv holds the pinned SDK and runs tests/digitalhub/run_flows.py; asyncrun runs from a
    plain venv nested in it (``asyncrun-venv``, ``pip install -e .[server]`` on every
    invocation so it tracks the work tree). run_flows.py starts the server with a token and
    runs tests/digitalhub/sdk_flow.py once per mode (server-executed, ``local_execution=True``).
    """
    session.install(*DIGITALHUB)
    venv = Path(session.virtualenv.location) / "asyncrun-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        session.run_install("python", "-m", "venv", str(venv))
    session.run_install(str(python), "-m", "pip", "install", "-q", "-e", ".[server]", external=True)
    flows = "tests/digitalhub/run_flows.py"
    session.run("python", flows, "--asyncrun-python", str(python), *session.posargs)


UI_DIR = Path("asyncrun/server/_ui")
UI_VENDOR: dict[str, tuple[str, str, dict[str, str]]] = {
    # npm package: (version, the registry's integrity of its tarball, {file in it: vendored as})
    "preact": (
        "10.29.8",
        "sha512-ej2aVZ+vZ8WO7tvlQWRM9N63A0KzF9q4mWJfDUHgYaIofWY9hu74QdnQrjoPMmZi2/nZ5gN0bJCQF49xQqx09Q==",
        {
            "dist/preact.module.js": "preact.module.js",
            "hooks/dist/hooks.module.js": "hooks.module.js",
        },
    ),
    "htm": (
        "3.1.1",
        "sha512-983Vyg8NwUE7JkZ6NmOqpCZ+sh1bKv2iYTlUkzlWmA5JD2acKoxd4KVxbMmxX/85mtfdnDmTFoNKcg5DGAvxNQ==",
        {"dist/htm.module.js": "htm.module.js"},
    ),
    "uplot": (
        "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        {"dist/uPlot.esm.js": "uPlot.esm.js", "dist/uPlot.min.css": "uPlot.min.css"},
    ),
}


@nox.session(python=False)
def vendor_ui(session: nox.Session) -> None:
    """Vendor the dashboard's front-end packages into asyncrun/server/_ui/vendor/ (then commit).

    Each package comes from the npm registry with `npm pack` (only npm is needed: nothing is
    built or installed), is checked against the integrity pinned in UI_VENDOR, and only its
    built files and its licence are copied. To upgrade one, change its version, run this
    session once to learn the new integrity, pin it, and run it again.
    """
    if shutil.which("npm") is None:
        session.error("vendor_ui needs npm (apt-get install -y npm)")
    vendor = UI_DIR / "vendor"
    shutil.rmtree(vendor, ignore_errors=True)
    lines = ["# Vendored by `nox -s vendor_ui` from the npm registry; do not edit.", ""]
    for name, (version, integrity, files) in UI_VENDOR.items():
        with tempfile.TemporaryDirectory() as tmp:
            session.run(
                "npm", "pack", f"{name}@{version}", "--pack-destination", tmp, "--silent",
                external=True, silent=True,
            )  # fmt: skip
            (tarball,) = Path(tmp).glob("*.tgz")
            digest = hashlib.sha512(tarball.read_bytes()).digest()
            got = "sha512-" + base64.b64encode(digest).decode()
            if got != integrity:
                session.error(f"{name}@{version}: integrity {got} is not the pinned {integrity}")
            target = vendor / name
            target.mkdir(parents=True)
            with tarfile.open(tarball) as archive:
                for source, dest in {**files, "LICENSE": "LICENSE"}.items():
                    member = archive.extractfile(f"package/{source}")
                    if member is None:
                        session.error(f"{name}@{version} has no file {source}")
                    (target / dest).write_bytes(member.read())
        lines.append(f"{name} {version} {integrity}: {', '.join(files.values())}, LICENSE")
    (vendor / "VERSIONS.txt").write_text("\n".join(lines) + "\n")
    session.log(f"vendored {', '.join(UI_VENDOR)} into {vendor}")


@nox.session(python=PYTHON)
def ui(session: nox.Session) -> None:
    """The dashboard's tests (tests/ui): Playwright driving Debian's Chromium, no download.

    Needs Chromium installed (`apt-get install -y chromium`), or its path in ASYNCRUN_CHROMIUM.
    Screenshots land in tests/ui/screenshots/ (ignored by git).
    """
    chromium = os.environ.get("ASYNCRUN_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        session.error(
            "the dashboard's tests need Chromium: apt-get install -y chromium "
            "(or set ASYNCRUN_CHROMIUM to a Chromium binary)"
        )
    session.install("-e", ".[test]", "playwright>=1.45,<2")
    session.run(
        "python", "-m", "pytest", "tests/ui", *session.posargs, env={"ASYNCRUN_CHROMIUM": chromium}
    )


RAY = "ray[default]==2.60.0"
"""The Ray release the Ray engine (asyncrun/server/_ray.py) was measured against."""


@nox.session(python=PYTHON)
def ray(session: nox.Session) -> None:
    """The Ray engine's tests (tests/ray) against a real Ray head started on loopback.

    Heavy: its own venv holds Ray (about 550 MB installed), and the head takes about 1 GB of
    memory while the tests run. asyncrun itself never imports Ray; only the head does.
    """
    session.install("-e", ".[test]", RAY)
    session.run("python", "-m", "pytest", "tests/ray", *session.posargs)


@nox.session(python=PYTHON)
def bench_ray(session: nox.Session) -> None:
    """The Ray executor against the local agent (benchmarks/bench_ray.py, a head on loopback).

    Writes benchmarks/results/ray.json. Arguments after ``--`` go to the script (``--jobs N``).
    """
    session.install("-e", ".[test]", RAY)
    session.run("python", "benchmarks/bench_ray.py", *session.posargs)
