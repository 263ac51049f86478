"""Progress of long steps (build, push, pull, base bootstrap): the current step, layer progress
and elapsed time, as text.

Only formatting and state live here; cli.Output decides where the text goes (the CLI is the
only place that prints). Two styles:
  live   on a terminal: build output collapses into one status line that is redrawn in place,
         and step lines stay, stamped with the elapsed time;
  plain  anywhere else (CI logs, pipes, NO_COLOR, CI=...): every line is kept, no redraws and no
         escape codes, so a log reads the same as what happened.
--quiet and --json show nothing at all (decided by Output).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from builder.engine_api import LayerProgress

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# BuildKit's plain progress: "#7 [builder 3/6] RUN ...", a step of one stage (stages run at once).
KIT_STEP_RE = re.compile(r"^#\d+ \[(?:[^\]\s]+ )?(\d+)/(\d+)\] (.*)$")
# Statuses after which a layer needs no more transfer.
_LAYER_DONE = (
    "Pushed",
    "Layer already exists",
    "Pull complete",
    "Already exists",
    "Download complete",
)


def live_allowed(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Redraw a status line only for a person at a terminal: not in CI, not with NO_COLOR."""
    env = os.environ if env is None else env
    if env.get("NO_COLOR") or env.get("CI") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def clock_text(seconds: float) -> str:
    """12.3s below a minute, then 4m05s: short enough for every line."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


@dataclass(frozen=True)
class Shown:
    """One line to show: `keep` lines stay on screen; the others may be overwritten."""

    text: str
    keep: bool


@dataclass
class Progress:
    live: bool
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)
    step: tuple[int, int] | None = None
    step_started: float = 0.0

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def stamp(self) -> str:
        return f"[{clock_text(self.elapsed())}]"

    def build_line(self, line: str) -> Shown:
        """A line of `docker build` output; step lines get the step count and elapsed time."""
        m = STEP_RE.match(line) or KIT_STEP_RE.match(line)
        if m:
            self.step = (int(m.group(1)), int(m.group(2)))
            self.step_started = self.clock()
            return Shown(f"Step {m.group(1)}/{m.group(2)} {self.stamp()} {m.group(3)}", keep=True)
        if self.live and self.step:
            n, total = self.step
            spent = clock_text(self.clock() - self.step_started)
            return Shown(f"step {n}/{total}, {spent} in this step: {line.strip()}", keep=False)
        return Shown(line, keep=True)


@dataclass
class LayerTally:
    """Push or pull progress over all layers: how many are done and the bytes moved so far."""

    current: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def add(self, ev: LayerProgress) -> None:
        if ev.total:
            self.total[ev.layer] = ev.total
        if ev.current is not None:
            self.current[ev.layer] = ev.current
        if ev.status in _LAYER_DONE:
            self.done.add(ev.layer)
            if ev.layer in self.total:
                self.current[ev.layer] = self.total[ev.layer]
        self.current.setdefault(ev.layer, 0)

    def text(self) -> str:
        layers = len(self.current)
        moved, known = sum(self.current.values()), sum(self.total.values())
        size = f", {moved / 1e6:.1f} of {known / 1e6:.1f} MB" if known else ""
        return f"layers {len(self.done)}/{layers} done{size}"
