"""Turning a stored launch into a job's process: its user, its folder, what it must reach."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import kinds
from .._core import launch as _launch
from . import _procs


def user_for(launch: _launch.Launch, uids: tuple[int, ...], taken: set[int]) -> int | None:
    """The uid an execution runs as: its own if isolated, else the agent's (``None``).

    Raises:
        ValueError: if it cannot be isolated (not root, no free uid in ``uids``).
    """
    if not launch.isolate:
        return None
    if os.geteuid() != 0:
        raise ValueError("isolated jobs need an agent running as root")
    uid = _procs.free_uid(uids[0], uids[1], taken)
    if uid is None:
        raise ValueError(f"no free uid in {uids[0]}-{uids[1]} for the job")
    _procs.kill_user(uid)  # nothing of an earlier job of this uid may meet this one
    return uid


def run_dir(launch: _launch.Launch, project: str, id: str, uid: int | None) -> str | None:
    """The run's own folder in the server's jobs folder (kept across resumes)."""
    if launch.jobs_dir is None:
        return None
    jobs = Path(launch.jobs_dir)
    if not jobs.exists():
        jobs.mkdir(parents=True, exist_ok=True)
    # Isolated users may enter the jobs folder (to reach their run's) but not list it.
    os.chmod(jobs, 0o711 if launch.isolate else 0o700)
    parent = jobs / project
    parent.mkdir(exist_ok=True)
    os.chmod(parent, 0o711 if launch.isolate else 0o700)
    folder = parent / id
    folder.mkdir(exist_ok=True)
    if uid is not None:
        chown_tree(folder, uid)
    return str(folder)


def check_reachable(
    spec: kinds.ProcessSpec,
    cwd: str,
    env: dict[str, str],
    launch: _launch.Launch,
    uid: int,
) -> None:
    """Refuse, with what to do about it, a job its isolated user could not even start.

    Raises:
        ValueError: naming what the user ``uid`` cannot reach and why.
    """
    program = spec.argv[0]
    path = {**launch.env, **spec.env, **env}.get("PATH", _launch.DEFAULT_PATH)
    found = program if "/" in program else shutil.which(program, path=path)
    if found is None:
        raise ValueError(f"{program!r} is not found on the job's PATH ({path})")
    for what, target, execute in (
        ("program", found, True),
        ("working folder", cwd, True),
        *(("file", read, False) for read in spec.reads),
    ):
        why = _procs.unreachable(target, uid, uid, execute=execute)
        if why:
            raise ValueError(
                f"the isolated job (uid {uid}) cannot reach its {what} {target}: {why}. "
                "Install Python and code where every user may read them (e.g. /opt or "
                "/usr/local, not under /root), or run the server without --isolate-jobs"
            )


def chown_tree(path: Path, uid: int) -> None:
    """Give ``path`` and everything in it to ``uid`` (an isolated job's user)."""
    os.chown(path, uid, uid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)
