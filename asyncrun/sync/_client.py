from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import sniffio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from .._core.query import DEFAULT_LIMIT
from .._core.records import Project
from ..client._client import AsyncClient
from ..client._run import AsyncRun
from ._hop import Hop
from ._run import Run

T = TypeVar("T")

_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()


def _close_live_clients() -> None:
    # Runs at interpreter exit *before* concurrent.futures joins its threads (one of which runs
    # each portal): closing here flushes buffered metrics, within the exit flush deadline, and
    # lets the portal threads end instead of hanging the exit.
    for client in list(_LIVE):
        try:
            client.close()
        except Exception:
            logging.getLogger("asyncrun").exception("closing an asyncrun.Client at exit failed")


threading._register_atexit(_close_live_clients)  # type: ignore[attr-defined]


class Client:
    """The blocking client: the same names and signatures as :class:`~asyncrun.AsyncClient`.

    Each ``Client`` owns one event-loop thread (an anyio ``BlockingPortal``) in which its
    ``AsyncClient`` lives for the client's whole life, so it works from scripts, from several
    threads at once, and inside a running event loop (a Jupyter cell). Use it as a context
    manager or call :meth:`close`.

    Args:
        endpoint: URL of an ``asyncrun server``; defaults to ``ASYNCRUN_ENDPOINT``, else the
            embedded backend.
        token: Bearer token; defaults to ``ASYNCRUN_TOKEN``.
        backend: Event-loop library of the portal thread, ``"asyncio"`` or ``"trio"``.
        **kwargs: Passed on to :class:`~asyncrun.AsyncClient` (``timeout``, ``home``,
            ``context``).

    Example:
        >>> with asyncrun.Client() as client:  # doctest: +SKIP
        ...     run = client.new_run(project="demo", kind="command+job",
        ...                          spec={"command": ["echo", "hi"]})
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        backend: str = "asyncio",
        **kwargs: Any,
    ) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._portal: BlockingPortal = self._outside_trio(
            self._stack.enter_context, start_blocking_portal(backend)
        )
        self._hop = Hop()
        try:
            self._async: AsyncClient = self._outside_trio(
                self._stack.enter_context,
                self._portal.wrap_async_context_manager(
                    self._serve(self._hop, endpoint, token, kwargs)
                ),
            )
        except BaseException:
            self._outside_trio(self._stack.close)
            raise
        self._closed = False
        _LIVE.add(self)

    @staticmethod
    @asynccontextmanager
    async def _serve(
        hop: Hop, endpoint: str | None, token: str | None, kwargs: dict[str, Any]
    ) -> AsyncIterator[AsyncClient]:
        # Entered and exited by one task in the portal, so the client's background tasks live
        # there, and built there so its connection pool belongs to that loop. The client closes
        # first; then, as the portal would, the hop waits for the calls still running.
        async with hop.serve(), AsyncClient(endpoint, token, **kwargs) as client:
            yield client

    def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` in the portal and block for its result.

        Ctrl-C while blocked cancels the task in the portal, then re-raises.
        """
        if os.getpid() != self._pid:
            raise RuntimeError(
                "this Client was created in another process (before a fork); "
                "create a new Client in this process"
            )
        if self._closed:
            raise RuntimeError("this Client is closed; create a new one")
        # One round trip (portal.call makes two), and safe from a thread that runs Trio.
        return self._hop.call(fn, *args)

    @staticmethod
    def _outside_trio(fn: Callable[..., T], *args: Any) -> T:
        # Trio refuses to hand work to another Trio loop from a thread that runs Trio itself
        # (a Trio portal used inside trio.run): then submit from a short-lived helper thread.
        try:
            inside_trio = sniffio.current_async_library() == "trio"
        except sniffio.AsyncLibraryNotFoundError:
            inside_trio = False
        if not inside_trio:
            return fn(*args)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(fn, *args).result()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the async client and stop the portal thread. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if os.getpid() != self._pid:
                return  # a forked child: the portal thread lives only in the parent
            self._outside_trio(self._stack.close)  # exits the async client, stops the portal

    @property
    def context(self) -> Path:
        """Folder ``export()`` writes to."""
        return self._async.context

    @property
    def endpoint(self) -> str | None:
        """URL of the server, or ``None`` on the embedded backend."""
        return self._async.endpoint

    def _wrap(self, run: AsyncRun) -> Run:
        return Run(self, run)

    def build_run(
        self,
        project: str,
        kind: str,
        *,
        spec: dict[str, Any] | None = None,
        name: str | None = None,
        id: str | None = None,
        labels: Iterable[str] | None = None,
        description: str | None = None,
        user: str | None = None,
    ) -> Run:
        """Build a run record without saving it; see ``AsyncClient.build_run``."""
        return self._wrap(
            self._async.build_run(
                project,
                kind,
                spec=spec,
                name=name,
                id=id,
                labels=labels,
                description=description,
                user=user,
            )
        )

    def new_run(
        self,
        project: str,
        kind: str,
        *,
        spec: dict[str, Any] | None = None,
        name: str | None = None,
        id: str | None = None,
        labels: Iterable[str] | None = None,
        description: str | None = None,
        user: str | None = None,
    ) -> Run:
        """Build a run and create it in the backend; see ``AsyncClient.new_run``."""
        # Building validates at the call, in this thread; only the save crosses to the portal.
        run = self.build_run(
            project,
            kind,
            spec=spec,
            name=name,
            id=id,
            labels=labels,
            description=description,
            user=user,
        )
        return run.save()

    def projects(self) -> list[Project]:
        """The projects that have runs; see ``AsyncClient.projects``."""
        return self._call(self._async.projects)

    def get_run(self, project: str, id: str) -> Run:
        """Read a run from the backend (``NotFound`` if it does not exist)."""
        return self._wrap(self._call(self._async.get_run, project, id))

    def list_runs(
        self,
        project: str,
        *,
        state: str | Iterable[str] | None = None,
        kind: str | None = None,
        name: str | None = None,
        label: str | Iterable[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        ids: Iterable[str] | None = None,
        page_size: int = DEFAULT_LIMIT,
    ) -> Iterator[Run]:
        """Iterate over a project's runs, newest first; filters as ``AsyncClient.list_runs``."""
        pages = self._async.list_runs(
            project,
            state=state,
            kind=kind,
            name=name,
            label=label,
            created_after=created_after,
            created_before=created_before,
            ids=ids,
            page_size=page_size,
        )
        return self._iter_runs(pages)

    def _iter_runs(self, pages: AsyncGenerator[AsyncRun, None]) -> Iterator[Run]:
        try:
            while True:
                try:
                    run = self._call(pages.__anext__)
                except StopAsyncIteration:
                    return
                yield self._wrap(run)
        finally:
            if not self._closed:
                self._call(pages.aclose)

    def load_run(self, path: str | Path) -> Run:
        """Read a run from a YAML file written by ``export()`` (not saved to the backend)."""
        return self._wrap(self._call(self._async.load_run, path))
