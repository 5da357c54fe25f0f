"""Processes of jobs: ending every descendant, users of isolated jobs, private files.

How a job's processes are found, so that none outlives its job:

- **Isolated jobs** (``--isolate-jobs``) run as a user of their own: every process of that
  user is the job's, whatever it did (``setsid``, double fork, an emptied environment). They
  are ended with ``kill(-1, SIGKILL)`` from a child that took that user's identity.
- **Other jobs** run as the agent's user. The agent is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``): a job's orphaned descendants become the agent's children
  instead of init's, and carry the execution's marker (``ASYNCRUN_EXECUTION``) in their
  environment. When a job ends, its process group and every orphan with its marker, with their
  descendants, are killed. A process that both leaves the group and empties its environment
  escapes this; isolated jobs cannot.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import psutil

MARKER: Final = "ASYNCRUN_EXECUTION"
"""Environment variable naming the execution (``project/id/number``) a process belongs to."""
DEFAULT_UIDS: Final = (61184, 65519)
"""The uid range of isolated jobs: systemd's range for dynamic users."""
_PR_SET_PDEATHSIG: Final = 1
_PR_SET_CHILD_SUBREAPER: Final = 36


def _prctl(option: int, value: int) -> bool:
    with contextlib.suppress(OSError, AttributeError):
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)) == 0
    return False


def become_subreaper() -> bool:
    """Make this process adopt its descendants' orphans (Linux); ``False`` if it cannot."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> None:  # pragma: no cover  (runs in the child between fork and exec)
    """Ask the kernel to SIGKILL this process when its parent dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def killpg(pid: int, sig: int) -> None:
    """Signal a process group, if it still exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _tree(process: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [process, *process.children(recursive=True)]
    return [process]


def _marker(process: psutil.Process) -> str | None:
    try:
        return process.environ().get(MARKER)
    except psutil.Error:
        return None


def kill_lost_group(pid: int, started: float | None) -> None:
    """SIGKILL what is left of a lost job's process group.

    The leader may be dead (PDEATHSIG) while its children live on. The kernel never reuses a
    pid that is still some group's id, so if no process has the leader's pid, a group with that
    id can only be the job's; if a process with that pid exists but is not the leader (its
    start time differs), the pid was reused after the whole group ended: leave it alone.
    """
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - (started or 0.0)) >= 0.05:
            return
    except psutil.NoSuchProcess:
        pass
    except psutil.Error:
        return
    killpg(pid, signal.SIGKILL)


def kill_execution(pid: int, started: float | None, uid: int | None, key: str) -> None:
    """SIGKILL all that is left of an execution no agent watches any more (lost or deleted).

    An isolated one: every process of its uid. Another: its process group, and every process
    carrying its marker (slow: reads every process, so only for these rare cases).
    """
    if uid is not None:
        kill_user(uid)
        return
    kill_lost_group(pid, started)
    kill_all(with_marker(key))


def kill_all(processes: Iterable[psutil.Process]) -> None:
    """SIGKILL each process (and its descendants), ignoring those already gone."""
    for process in list(processes):
        for member in _tree(process):
            with contextlib.suppress(psutil.Error):
                member.kill()


def _children() -> list[int]:
    """Pids of this process's children.

    Linux lists them per thread in ``/proc/self/task/*/children``: microseconds, where psutil
    reads every process of the machine (150 ms among 8,000 processes, and a busy agent asks
    once per job that ends).
    """
    try:
        pids: list[int] = []
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as handle:
                pids += map(int, handle.read().split())
        return pids
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN
        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process().children()]
        return []


def orphans(keep: set[int]) -> Iterator[tuple[psutil.Process, str | None]]:
    """This process's children but ``keep`` (job leaders), with their execution marker."""
    for pid in _children():
        if pid not in keep:
            with contextlib.suppress(psutil.Error):
                child = psutil.Process(pid)
                yield child, _marker(child)


def reap_zombies(keep: set[int]) -> None:
    """Collect the exit status of orphans that ended (the subreaper's duty)."""
    for child, _ in orphans(keep):
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)


def with_marker(key: str) -> list[psutil.Process]:
    """Every process whose environment names execution ``key`` (slow: reads all processes).

    Used when an agent recovers from its predecessor's death, when the orphans went to init.
    """
    found = []
    for process in psutil.process_iter():
        if process.pid != os.getpid() and _marker(process) == key:
            found.append(process)
    return found


def kill_user(uid: int) -> None:
    """SIGKILL every process of ``uid`` (an isolated job's user), until none is left."""
    for _ in range(20):  # a fork racing the kill may survive one round
        if not _processes_of(uid):
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover  (the child)
            try:
                os.setgid(uid)
                os.setgroups([])
                os.setuid(uid)
                # As that user, -1 reaches exactly that user's processes (not this one).
                os.kill(-1, signal.SIGKILL)
            except BaseException:
                os._exit(1)
            os._exit(0)
        os.waitpid(pid, 0)
        reap_zombies(set())


def _processes_of(uid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["uids", "status"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if process.info["uids"].real == uid and process.info["status"] != "zombie":
                found.append(process)
    return found


def free_uid(low: int, high: int, taken: set[int]) -> int | None:
    """A uid in ``[low, high]`` that no account, running job or live process uses."""
    busy = None
    for uid in range(low, high + 1):
        if uid in taken:
            continue
        try:
            pwd.getpwuid(uid)
            continue  # a real account
        except KeyError:
            pass
        if busy is None:
            busy = {p.info["uids"].real for p in psutil.process_iter(["uids"]) if p.info["uids"]}
        if uid not in busy:
            return uid
    return None


def unreachable(path: str | Path, uid: int, gid: int, *, execute: bool = False) -> str | None:
    """Why user ``uid`` cannot reach ``path`` (``None`` if it can).

    Every folder on the way needs the search bit for that user, the file itself read (or
    execute) permission. Symbolic links are followed, each target checked too.
    """
    target = Path(os.path.abspath(path))
    checked: set[Path] = set()

    def check(current: Path) -> str | None:
        parts = current.parts
        here = Path(parts[0])
        for part in parts[1:]:
            verdict = _allowed(here, uid, gid, stat.S_IXUSR)
            if verdict:
                return verdict
            here = here / part
            if here.is_symlink() and here not in checked:
                checked.add(here)
                verdict = check(Path(os.path.realpath(here)))
                if verdict:
                    return verdict
        return None

    verdict = check(target)
    if verdict:
        return verdict
    return _allowed(Path(os.path.realpath(target)), uid, gid, stat.S_IXUSR if execute else 4 << 6)


def _allowed(path: Path, uid: int, gid: int, user_bit: int) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if info.st_uid == uid:
        shift = 0
    elif info.st_gid == gid:
        shift = 3
    else:
        shift = 6
    if info.st_mode & (user_bit >> shift):
        return None
    return f"{path} is mode {stat.S_IMODE(info.st_mode):04o}, owned by uid {info.st_uid}"


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with the last folder readable by its owner only."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)


def private_file(path: Path, *, create: bool = True) -> None:
    """Make ``path`` mode 0600, creating it empty if asked and missing."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    with contextlib.suppress(FileNotFoundError):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
