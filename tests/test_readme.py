"""The README runs as written: every fenced code block, in order, in a fresh folder.

Bash blocks run with ``bash -e`` (a failing command fails the block), Python blocks with this
interpreter (``python``); ``asyncrun``, ``python`` and ``python3`` on the PATH are this
interpreter. Each block gets its own process; they share the folder and ``ASYNCRUN_HOME``, as a
reader's terminal would. A block may be skipped only with a visible marker on the line before
it, ``<!-- readme-test: skip (why) -->``, and only the two set-up commands are: the test command
(it would run this test again) and the install command (it installs the checkout into the
interpreter; its job, ``examples/main_job.py``, is run here on its own).
"""

from __future__ import annotations

import os
import re
import shlex
import site
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

import asyncrun

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK_TIMEOUT = 180  # seconds; the slowest block takes a few on a busy machine
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
TEST_COMMAND = "python3 -m pip install -q nox && python3 -m nox"


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None  # the marker's reason, if skipped


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, in order."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md:{start + 1}: code block never closed"
        marker = SKIP.search(lines[start - 1]) if start > 0 else None
        skip = marker["why"] if marker else None
        found.append(Block(opening["lang"], "\n".join(body) + "\n", start + 1, skip))
        i += 1
    return found


README_BLOCKS = blocks(README.read_text(encoding="utf-8"))


def test_only_the_two_set_up_commands_are_skipped() -> None:
    skipped = [b for b in README_BLOCKS if b.skip]
    assert len(skipped) <= 2, [b.line for b in skipped]
    assert {b.code.strip() for b in skipped} <= {
        TEST_COMMAND,
        "python3 -m pip install -e '.[server]' && python3 examples/main_job.py",
    }
    # A marker that is not right above a block would silently skip nothing: refuse it.
    markers = len(SKIP.findall(README.read_text(encoding="utf-8")))
    assert markers == len(skipped)


def test_the_readme_test_command_is_what_ci_runs() -> None:
    ci_lines = (ROOT / ".ci/run").read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in ci_lines
    assert any(b.code.strip() == TEST_COMMAND for b in README_BLOCKS)


def test_every_relative_link_exists() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    relative = [link for link in links if "://" not in link]
    assert relative
    assert [link for link in relative if not (ROOT / link).exists()] == []


def test_every_block_is_bash_or_python() -> None:
    # Anything else could not run: a new language needs a runner here, or a skip marker.
    assert {b.lang for b in README_BLOCKS if not b.skip} <= {"bash", "python"}


def _python_under_test(folder: Path) -> str:
    """An interpreter whose ``import asyncrun`` is the code under test, PYTHONPATH or not.

    Jobs get a built environment, without PYTHONPATH: a checkout tested through PYTHONPATH, on
    a venv where another checkout is installed, would have its jobs (which import asyncrun)
    run the other checkout's code. Then this makes a venv that sees the code under test first
    and this interpreter's packages after it. Otherwise (nox, CI) it is this interpreter.
    """
    tested = Path(asyncrun.__file__).resolve().parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    seen = subprocess.run(
        [sys.executable, "-c", "import asyncrun; print(asyncrun.__file__)"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    if seen.returncode == 0 and Path(seen.stdout.strip()).resolve().parent == tested:
        return sys.executable
    overlay = folder / "venv"
    venv.create(overlay, with_pip=False, symlinks=True)
    (purelib,) = overlay.glob("lib/python*/site-packages")
    packages = [*site.getsitepackages(), site.getusersitepackages()]
    adds = "; ".join(f"site.addsitedir({d!r})" for d in packages)
    (purelib / "asyncrun_under_test.pth").write_text(f"{tested.parent}\nimport site; {adds}\n")
    return str(overlay / "bin" / "python")


@pytest.fixture
def reader(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh folder, and the environment of a reader's shell in it."""
    work = tmp_path / "work"
    work.mkdir()
    shims = tmp_path / "bin"
    shims.mkdir()
    python = shlex.quote(_python_under_test(tmp_path))
    for name, command in {
        "python": python,
        "python3": python,
        "asyncrun": f"{python} -m asyncrun",
    }.items():
        shim = shims / name
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCRUN_")}
    env.update(
        PATH=f"{shims}{os.pathsep}{env.get('PATH', '')}",
        ASYNCRUN_HOME=str(tmp_path / "home"),
        COLUMNS="100",
        NO_COLOR="1",
    )
    return work, env


def _run(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{what} did not finish within {BLOCK_TIMEOUT} s") from exc
    assert done.returncode == 0, (
        f"{what} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


def test_every_block_runs_in_order(reader: tuple[Path, dict[str, str]]) -> None:
    work, env = reader
    ran = 0
    for block in README_BLOCKS:
        if block.skip:
            continue
        what = f"the {block.lang} block at README.md:{block.line}"
        if block.lang == "bash":
            _run(["bash", "-e", "-o", "pipefail", "-c", block.code], work, env, what)
        else:
            _run(["python", "-c", block.code], work, env, what)
        ran += 1
    assert ran >= 4  # the job module, the CLI, async and sync Python


def test_the_set_up_commands_job_runs(reader: tuple[Path, dict[str, str]]) -> None:
    # The install half needs the network (and would reinstall this interpreter's asyncrun);
    # what it then runs is run here, from the checkout, as the README says.
    (setup,) = [b for b in README_BLOCKS if b.skip and b.code.strip() != TEST_COMMAND]
    job = setup.code.strip().rsplit("&&", 1)[1].strip()
    assert job == "python3 examples/main_job.py"
    _, env = reader
    _run(["bash", "-e", "-c", job], ROOT, env, f"{job!r} (README.md:{setup.line})")
