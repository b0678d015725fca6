"""The clustcontrol command line: the group `cli`, its verbs, and the one error boundary `main`.

One module per noun (init, image, node, update_node, apply, demo) holds the verbs, which only
parse arguments, call the library and print; common.py holds what they share.

Exit status: 0 success, 1 failure (a program failed, a lock is held), 2 invalid input
(nothing was written)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from clustcontrol import __version__
from clustcontrol.cli import apply, demo, image, init, node, update_node
from clustcontrol.cli.common import State, err, path_option, printable
from clustcontrol.errors import EXIT_FAILURE, ClustcontrolError, InvalidInputError
from clustcontrol.inventory.store import CONFIG_ENV, DEFAULT_CONFIG

P = ParamSpec("P")
R = TypeVar("R")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@path_option(
    "--config",
    "config",
    f"Inventory file [default: ${CONFIG_ENV} or {DEFAULT_CONFIG}].",
    default=None,
)
@click.option("--debug", is_flag=True, help="Show tracebacks and the commands run.")
@click.version_option(__version__)
@click.pass_context
def cli(ctx: click.Context, config: Path | None, debug: bool) -> None:
    """Keep cluster nodes identical to a standard root, synced at every boot.

    \b
    Typical use:
      clustcontrol --config cluster.yaml init --domain rostclust \\
          --network 192.168.0.0/24 --master-ip 192.168.0.1
      clustcontrol --config cluster.yaml node add node01 --mac 52:54:00:00:00:01 --ip 192.168.0.11
      clustcontrol --config cluster.yaml apply --dry-run
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    ctx.obj = State(config, debug)


for command in (
    init.init,
    image.image,
    image.status,
    node.node,
    update_node.update_node,
    apply.validate,
    apply.render,
    apply.apply,
    demo.demo,
):
    cli.add_command(command)


def _boundary(function: Callable[P, R]) -> Callable[P, R]:
    """A ClustcontrolError becomes its lines on stderr and its exit code; an OSError (a full
    disk, a permission refused) one line naming the path, exit 1 (a traceback only with
    --debug); Ctrl-C exits 130."""

    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        debug = "--debug" in sys.argv
        try:
            return function(*args, **kwargs)
        except ClustcontrolError as exc:
            if debug:
                raise
            for line in exc.lines():
                err.print(f"clustcontrol: error: {printable(line)}", markup=False)
            if exc.hint:
                err.print(f"clustcontrol: hint: {printable(exc.hint)}", markup=False)
            sys.exit(exc.exit_code)
        except OSError as exc:
            if debug:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            message = printable(f"{exc.strerror or exc}{where}")
            err.print(f"clustcontrol: error: {message}", markup=False)
            sys.exit(EXIT_FAILURE)
        except KeyboardInterrupt:
            err.print("clustcontrol: interrupted")
            sys.exit(130)

    return wrapper


@_boundary
def main() -> None:
    """Entry point: click without its own error handling, so ours is the only boundary."""
    try:
        cli.main(prog_name="clustcontrol", standalone_mode=False)
    except click.exceptions.Abort:  # Ctrl-C (or SIGTERM during a rehearsal)
        err.print("clustcontrol: interrupted")
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help, exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line, like every other invalid input
        where = exc.ctx.command_path if exc.ctx else "clustcontrol"
        raise InvalidInputError(
            [f"{where}: {exc.format_message()}"], hint=f"try '{where} --help'"
        ) from exc
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
