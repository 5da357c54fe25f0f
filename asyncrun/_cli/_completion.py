"""``asyncrun completion SHELL``: the script that makes a shell complete asyncrun's words."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_ASYNCRUN_COMPLETE"


@click.command("completion", short_help="Print the shell completion script (bash, zsh, fish).")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the script that makes SHELL complete asyncrun's commands, options and run ids.

    Run ids are completed from the newest runs of the project (-p, ASYNCRUN_PROJECT), read
    from the backend the command line names (--endpoint, ASYNCRUN_ENDPOINT).

    \b
    Example: load it in every new shell
      bash:  echo 'eval "$(asyncrun completion bash)"' >> ~/.bashrc
      zsh:   echo 'eval "$(asyncrun completion zsh)"' >> ~/.zshrc
      fish:  asyncrun completion fish > ~/.config/fish/completions/asyncrun.fish
    """
    cls = get_completion_class(shell)
    assert cls is not None  # every choice has a class
    root = ctx.find_root().command
    click.echo(cls(root, {}, "asyncrun", COMPLETE_VAR).source())
