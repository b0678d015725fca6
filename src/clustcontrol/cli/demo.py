"""`clustcontrol demo`: a demo cluster in a scratch directory."""

from __future__ import annotations

from pathlib import Path

import click

from clustcontrol.cli.common import out, path_option


@click.command()
@path_option("--dir", "directory", "Scratch directory [a new temporary one].", default=None)
@click.option("--nodes", "count", default=8, show_default=True, help="How many demo nodes.")
def demo(directory: Path | None, count: int) -> None:
    """Build a demo cluster in a scratch directory: inventory, render, apply under a prefix.

    \b
    Example:
      clustcontrol demo --dir /tmp/clustcontrol-demo
    """
    from clustcontrol.demo import run_demo

    run_demo(directory, count, out)
