from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from .. import _serde
from .._core.records import Run
from ._record_view import RecordView

if TYPE_CHECKING:
    from ._client import AsyncClient


def _write_atomically(path: Path, text: str) -> None:
    # Write beside the target, then rename: a crash never leaves half a file behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class AsyncRun(RecordView):
    """A run bound to an :class:`AsyncClient`: the record plus the methods of the specification.

    Methods that talk to the backend are coroutines and return the run itself, refreshed.
    """

    __slots__ = ("_client", "_record")

    def __init__(self, client: AsyncClient, record: Run) -> None:
        self._client = client
        self._record = record

    @property
    def record(self) -> Run:
        """The underlying attrs record (as last read from, or written to, the backend)."""
        return self._record

    async def save(self, update: bool = False) -> AsyncRun:
        """Save the run into the backend.

        Args:
            update: ``False`` creates the run (an error if its id exists); ``True`` updates it,
                failing with :class:`~asyncrun.RevisionConflict` if it changed since it was read.

        Returns:
            The run, as the backend stored it.
        """
        transport = self._client._transport
        data = _serde.to_dict(self._record)
        if update:
            revision = self._record.metadata.revision
            self._record = await transport.update_run(self.project, self.id, data, revision)
        else:
            self._record = await transport.create_run(self.project, data)
        return self

    async def refresh(self) -> AsyncRun:
        """Read the run again from the backend.

        Returns:
            The run, refreshed.
        """
        self._record = await self._client._transport.get_run(self.project, self.id)
        return self

    async def export(self) -> str:
        """Write the run as YAML to ``runs-<id>.yaml`` in the client's context folder.

        Returns:
            The path of the file written.
        """
        path = self._client.context / f"runs-{self.id}.yaml"
        await anyio.to_thread.run_sync(_write_atomically, path, _serde.to_yaml(self._record))
        return str(path)

    async def delete(self) -> None:
        """Delete the run from the backend (a missing run raises :class:`~asyncrun.NotFound`)."""
        await self._client._transport.delete_run(self.project, self.id)
