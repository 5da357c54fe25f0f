"""Inside a job: the run that this process executes."""

from __future__ import annotations

import atexit
import os
import threading

from .sync import Client, Run

_lock = threading.Lock()
_client: Client | None = None


def current_run() -> Run:
    """The sync :class:`~asyncrun.Run` of the job this process executes.

    The job's supervisor puts the run's identity and its backend into the environment
    (``ASYNCRUN_RUN_PROJECT``, ``ASYNCRUN_RUN_ID``, and ``ASYNCRUN_ENDPOINT`` or
    ``ASYNCRUN_HOME``). The client behind it is shared by the process and closed at exit.

    Raises:
        RuntimeError: outside a job started by asyncrun.
    """
    project = os.environ.get("ASYNCRUN_RUN_PROJECT")
    id_ = os.environ.get("ASYNCRUN_RUN_ID")
    if not project or not id_:
        raise RuntimeError(
            "current_run() works inside a job started by asyncrun "
            "(ASYNCRUN_RUN_PROJECT and ASYNCRUN_RUN_ID are not set)"
        )
    global _client
    with _lock:
        if _client is None:
            _client = Client()
            atexit.register(_client.close)
    return _client.get_run(project, id_)
