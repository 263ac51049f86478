"""builder/progress.py and its use by cli.Output: steps, elapsed time, plain off a terminal."""

from __future__ import annotations

import io

import pytest

from builder.engine_api import LayerProgress
from builder.progress import LayerTally, Progress, clock_text, live_allowed


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_clock_text() -> None:
    assert clock_text(3.21) == "3.2s"
    assert clock_text(65) == "1m05s"
    assert clock_text(3600) == "60m00s"


@pytest.mark.parametrize(
    ("env", "tty", "live"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"CI": "true"}, True, False),
        ({"TERM": "dumb"}, True, False),
    ],
)
def test_live_only_for_a_person_at_a_terminal(env: dict[str, str], tty: bool, live: bool) -> None:
    stream = Tty() if tty else io.StringIO()
    assert live_allowed(stream, env) is live


def test_step_lines_carry_count_and_elapsed_time() -> None:
    clock = Clock()
    p = Progress(live=True, clock=clock)
    clock.now += 12.5
    shown = p.build_line("Step 3/12 : RUN apt-get update")
    assert shown.keep and shown.text == "Step 3/12 [12.5s] RUN apt-get update"
    clock.now += 4
    other = p.build_line("Get:1 http://archive bookworm InRelease")
    assert not other.keep  # redrawn in place on a terminal
    assert other.text.startswith("step 3/12, 4.0s in this step: Get:1")


def test_plain_mode_keeps_every_line_as_it_was() -> None:
    p = Progress(live=False, clock=Clock())
    p.build_line("Step 1/2 : FROM x")
    shown = p.build_line("Collecting numpy")
    assert shown.keep and shown.text == "Collecting numpy"


def test_layer_tally() -> None:
    t = LayerTally()
    t.add(LayerProgress("a", "Downloading", 5_000_000, 10_000_000))
    t.add(LayerProgress("b", "Already exists"))
    assert t.text() == "layers 1/2 done, 5.0 of 10.0 MB"
    t.add(LayerProgress("a", "Pull complete"))
    assert t.text() == "layers 2/2 done, 10.0 of 10.0 MB"


def test_output_stamps_steps_and_is_silent_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    from builder.commands.output import Output

    out = Output(timed=True)  # pytest's stderr is not a terminal: plain lines
    out.build_line("Step 2/9 : COPY a b")
    out.build_line("some output")
    out.say("building")
    err = capsys.readouterr().err
    assert "Step 2/9 [" in err and "] COPY a b" in err
    assert "some output" in err and "\r" not in err
    assert "==> [" in err and "] building" in err
    quiet = Output(quiet=True, timed=True)
    quiet.build_line("Step 1/9 : FROM x")
    quiet.say("x")
    assert capsys.readouterr().err == ""


def test_buildkit_step_lines_are_kept_with_their_count() -> None:
    p = Progress(live=True, clock=lambda: 0.0)
    shown = p.build_line('#7 [builder 3/6] RUN ["/opt/venv/bin/pip", "install"]')
    assert shown.keep and shown.text.startswith('Step 3/6 [') and 'RUN ["/opt/venv/bin/pip"' in shown.text
    assert not p.build_line("#7 1.2 Collecting numpy").keep
