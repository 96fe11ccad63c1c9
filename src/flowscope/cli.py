"""The ``flowscope`` command.

    $ flowscope demo                                   # sqlite:///flowscope.db in the current directory
    $ flowscope demo --database-url postgresql+psycopg://user:pass@localhost/db --executions 50

Errors the user can fix (a bad database URL, a missing driver, a server that does not answer)
are one line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import click
from rich.console import Console

from . import __version__
from .workflows import DEFAULT_DATABASE_URL


class _UserError(click.ClickException):
    """A one-line ``Error: ...`` with exit status 2 (click's UsageError would add a usage block)."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowscope")
def main() -> None:
    """Monitor, benchmark and optimize workflow executions, built on OpenTelemetry."""


@main.command()
@click.option("--database-url", default=DEFAULT_DATABASE_URL, show_default=True, metavar="URL",
              help="SQLAlchemy database URL; the example tables in it are recreated.")
@click.option("--executions", "executions", type=click.IntRange(1, 100_000), default=20, show_default=True,
              metavar="N", help="Executions per example workflow.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated example data.")
def demo(database_url: str, executions: int, seed: int) -> None:
    """Run the example workflows against a real database and time every action."""
    from .demo import DatabaseURLError, print_demo, run_demo   # keep `flowscope --help` fast

    try:
        result = run_demo(database_url, executions_per_workflow=executions, seed=seed)
    except DatabaseURLError as err:
        raise _UserError(f"--database-url: {err}") from None
    print_demo(result, _console())


def _console() -> Console:
    """Rich console; wide enough for the report's tables when output is piped or logged."""
    console = Console()
    return console if console.is_terminal else Console(width=160)
