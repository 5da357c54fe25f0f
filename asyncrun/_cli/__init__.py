"""The ``asyncrun`` command: the client API on the command line, and ``asyncrun server``.

Every command on runs is a thin layer over the sync client (``asyncrun.Client``): the logic
of creating, waiting, following and exporting lives there, once.
"""

from ._app import cli, main
from ._completion import completion_command
from ._inspect import (
    describe_command,
    export_command,
    get_command,
    logs_command,
    ls_command,
    metrics_command,
    projects_command,
)
from ._runs import (
    apply_command,
    resume_command,
    rm_command,
    run_command,
    stop_command,
    wait_command,
)
from ._server import server
from ._ui import ui_command

server.short_help = "Serve the HTTP API; manage its access tokens."

for _command in (
    run_command,
    ls_command,
    describe_command,
    get_command,
    logs_command,
    wait_command,
    stop_command,
    resume_command,
    rm_command,
    export_command,
    apply_command,
    metrics_command,
    projects_command,
    server,
    completion_command,
    ui_command,
):
    cli.add_command(_command)

__all__ = ["cli", "main"]
