"""Leave nothing behind when a build is interrupted (SIGINT, SIGTERM).

Python turns SIGINT into KeyboardInterrupt, but SIGTERM (what `kill`, CI runners and
`docker stop` send) ends the process at once: no `finally`, no context manager exit. The build
command therefore installs `install_signal_handlers()`, which makes both signals raise
`Interrupted` (a KeyboardInterrupt) in the main thread. Unwinding then does the cleanup where the
resources were taken:

- the build context: `tempfile.TemporaryDirectory(prefix="mlbuild-context-")` removes it;
- temporary containers (label org.mlbuild.temporary=1): `Engine.run`'s `finally` removes them;
- the engine's own build containers: closing the connection cancels a classic build, and the
  engine kills and removes its step container (`forcerm=True` also removes it on failure);
- partial tags: `untag_partial` (called by the pipeline when tagging is cut short) removes the
  tags this run had set, so no tag names an image whose tags are half written.

Further signals while unwinding are ignored, so a second Ctrl-C cannot cut the cleanup short; a
third one exits at once, for a cleanup that hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builder.engine_api import Engine

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal asked the build to stop; the exit status is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Handler:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            raise Interrupted(signum)
        if self.count >= 3:
            os._exit(128 + signum)  # the user insists: stop without cleaning up
        # the second signal: cleanup is running; let it finish


def install_signal_handlers() -> bool:
    """Make SIGINT and SIGTERM raise Interrupted. Only the main thread can install handlers:
    returns False (and changes nothing) elsewhere, e.g. when a test calls the CLI in a thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = _Handler()
    for sig in HANDLED:
        signal.signal(sig, handler)
    return True


def untag_partial(engine: Engine, refs: Iterable[str]) -> list[str]:
    """Remove tags that an interrupted run had set; returns the ones removed.

    Removing a tag that other tags share only untags; removing the last one deletes the
    (untested-by-this-run) image, which is what an interrupted run should leave: nothing.
    Signals are held off meanwhile, so the cleanup itself is not cut short.
    """
    removed = []
    with _signals_ignored():
        for ref in refs:
            with contextlib.suppress(Exception):  # the engine may be gone: best effort
                engine.remove_image(ref)
                removed.append(ref)
    return removed


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
