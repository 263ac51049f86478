"""How commands talk to the user: progress on stderr, one result on stdout (text or --json),
and typed errors as one or two lines with a stable exit code. Commands are the only code
that prints or exits; the library reports through callbacks and typed errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from builder.errors import MlbuildError

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "json_mode", is_flag=True, help="Print one JSON document.")


class Output:
    """Where messages go: progress on stderr (unless quiet or --json), results on stdout."""

    def __init__(self, json_mode: bool = False, quiet: bool = False, timed: bool = False):
        from builder.progress import Progress, live_allowed

        self.json_mode = json_mode
        self.quiet = quiet or json_mode
        self.timed = timed  # long commands (build, bootstrap): messages carry the elapsed time
        self.progress = Progress(live=not self.quiet and live_allowed(sys.stderr))
        self._status_shown = False  # a status line that the next message overwrites

    def say(self, text: str) -> None:
        if not self.quiet:
            self._clear_status()
            stamp = click.style(self.progress.stamp() + " ", dim=True) if self.timed else ""
            click.echo(click.style("==> ", fg="blue", bold=True) + stamp + text, err=True)

    def line(self, text: str) -> None:
        if not self.quiet:
            self._clear_status()
            click.echo(click.style("  | ", dim=True) + text, err=True)

    def build_line(self, text: str) -> None:
        """Build output: step lines stay (Step N/M [elapsed] ...); on a terminal the lines in
        between redraw one status line, elsewhere (CI, pipes, NO_COLOR) every line is kept."""
        if self.quiet:
            return
        shown = self.progress.build_line(text)
        if shown.keep:
            self.line(shown.text)
            return
        import shutil

        width = max(20, shutil.get_terminal_size().columns - 5)
        # Trailing \r: whatever is printed next (even an error) starts over this line.
        status = click.style("  | " + shown.text[:width], dim=True)
        click.echo("\r\x1b[2K" + status + "\r", nl=False, err=True)
        self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            click.echo("\r\x1b[2K", nl=False, err=True)
            self._status_shown = False

    def result(self, doc: Any, text: str) -> None:
        self._clear_status()
        if self.json_mode:
            click.echo(json.dumps(doc, indent=2, sort_keys=True))
        else:
            click.echo(text)


def handle_errors(fn: F) -> F:
    """Typed errors become one or two lines and a stable exit code; no traceback unless --debug."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool((ctx.find_root().obj or {}).get("debug"))
        try:
            return fn(*args, **kwargs)
        except MlbuildError as exc:
            if debug:
                raise
            show_error(exc)
            sys.exit(exc.exit_code)
        except Exception as exc:  # requests/urllib3 errors: an engine gone mid-stream
            from builder.engine import Engine

            lost = Engine.transport_error(exc)
            if debug or lost is None:
                raise
            show_error(lost)
            sys.exit(lost.exit_code)
        except KeyboardInterrupt as exc:  # builder.cleanup.Interrupted for SIGTERM too
            click.echo(f"error: interrupted{f' ({exc})' if str(exc) else ''}", err=True)
            sys.exit(getattr(exc, "exit_code", 130))

    return wrapper  # type: ignore[return-value]


def show_error(exc: MlbuildError) -> None:
    from builder.settings import redact

    click.echo(click.style("error: ", fg="red", bold=True) + redact(exc.message), err=True)
    for line in exc.details:
        click.echo("  " + redact(line), err=True)
    if exc.hint:
        click.echo(click.style("hint: ", fg="yellow") + redact(exc.hint), err=True)
