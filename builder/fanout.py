"""Building many images at once: the possible variants of a plan (builder.variants), in
parallel, each by builder.pipeline.build exactly as one recipe is built (smoke test, tags,
push and all). Nothing here prints: progress goes to an `on_event` callback the CLI draws.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from builder import pipeline
from builder.engine_api import Engine
from builder.errors import MlbuildError, SmokeFailed, UsageError
from builder.pipeline import BuildOptions, BuildResult
from builder.settings import BuildSettings
from builder.variants import DEFAULT_ID, Planned

OnEvent = Callable[[str, str, str], None]  # (variant label, state, text)


@dataclass(frozen=True)
class Outcome:
    planned: Planned
    result: str  # built | up-to-date | impossible | failed | smoke-failed
    build: BuildResult | None = None
    error: MlbuildError | None = None
    seconds: float = 0.0
    pushed: tuple[str, ...] = ()  # repository@digest
    smoked_on: str = ""  # the engine of the smoke step, when not the building one

    @property
    def ok(self) -> bool:
        return self.result in ("built", "up-to-date", "impossible")

    def to_dict(self) -> dict[str, Any]:
        b = self.build
        return {
            "variant": self.planned.variant.label,
            "recipe": str(self.planned.variant.source),
            "id": self.planned.variant.id,
            "values": dict(self.planned.variant.values),
            "result": self.result,
            "reason": self.planned.reason or (self.error.message if self.error else ""),
            "details": list(self.error.details) if self.error else [],
            "image_id": b.image_id if b else None,
            "size_bytes": b.size_bytes if b else None,
            "tags": list(b.tags) if b else [],
            "seconds": round(self.seconds, 1),
            "pushed": list(self.pushed),
            "smoked_on": self.smoked_on or None,
            "smoke": b.smoke.to_dict() if b and b.smoke else None,
        }


class FanoutFailed(MlbuildError):
    """Some variants failed; exit 3 when every failure is a smoke test, else 1."""

    def __init__(self, outcomes: list[Outcome]):
        bad = [o for o in outcomes if not o.ok]
        super().__init__(
            f"{len(bad)} of {len(outcomes)} variants failed",
            details=[f"{o.planned.variant.label}: {o.error.message if o.error else o.result}" for o in bad],
        )
        self.exit_code = 3 if all(o.result == "smoke-failed" for o in bad) else 1


def build_all(
    planned: list[Planned],
    *,
    connect: Callable[[], Engine],
    settings: BuildSettings,
    options: BuildOptions,
    jobs: int = 2,
    on_event: OnEvent = lambda *_: None,
    smoke_connect: Callable[[], Engine] | None = None,
) -> list[Outcome]:
    """Build the possible variants, at most `jobs` at a time; outcomes in the plan's order.

    Each variant goes through builder.pipeline.build, as one recipe does. Threads, not
    processes: a build mostly waits on the engine. Each thread connects its own Engine (the
    SDK's HTTP session is not meant to be shared between threads).
    """
    if jobs < 1:
        raise UsageError(f"-j {jobs}: give at least 1")

    def one(p: Planned) -> Outcome:
        label = p.variant.label
        if not p.possible:
            on_event(label, "impossible", p.reason)
            return Outcome(p, "impossible")
        on_event(label, "starting", "connecting to the engine")
        started = time.monotonic()
        try:
            return _build_one(p, connect, settings, options, on_event, smoke_connect, started)
        except SmokeFailed as exc:
            on_event(label, "smoke-failed", exc.message)
            return Outcome(p, "smoke-failed", error=exc, seconds=time.monotonic() - started)
        except MlbuildError as exc:
            on_event(label, "failed", exc.message)
            return Outcome(p, "failed", error=exc, seconds=time.monotonic() - started)
        except Exception as exc:
            err = MlbuildError(f"unexpected {type(exc).__name__}: {exc}")
            on_event(label, "failed", err.message)
            return Outcome(p, "failed", error=err, seconds=time.monotonic() - started)

    # Variants on one base share their first layers (OS packages, the venv) only when those
    # come from the build cache: built side by side, each would make its own copy. So the
    # first variant of each group builds first, and the rest of its group after it.
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, p in enumerate(planned):
        groups.setdefault(prefix_key(p) if p.possible else ("impossible", i), []).append(i)
    outcomes: dict[int, Outcome] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="mlbuild-variant") as pool:
        running: dict[Future[Outcome], tuple[int, list[int]]] = {}
        for members in groups.values():
            running[pool.submit(one, planned[members[0]])] = (members[0], members[1:])
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, followers = running.pop(future)
                outcomes[index] = future.result()
                for i in followers:
                    running[pool.submit(one, planned[i])] = (i, [])
    return [outcomes[i] for i in range(len(planned))]


def prefix_key(p: Planned) -> tuple[Any, ...]:
    """What the first build steps of a variant depend on (the rest differs per variant)."""
    s = p.spec
    assert s is not None
    return (s.base_image, s.python, s.cuda, s.system_packages, s.index_url, s.framework_from_base)


def _build_one(
    p: Planned,
    connect: Callable[[], Engine],
    settings: BuildSettings,
    options: BuildOptions,
    on_event: OnEvent,
    smoke_connect: Callable[[], Engine] | None,
    started: float,
) -> Outcome:
    label = p.variant.label
    engine = connect()
    smoke_engine = smoke_connect() if smoke_connect is not None and options.run_smoke else None
    stage = ["running"]

    def on_stage(name: str) -> None:
        stage[0] = name

    def on_line(line: str) -> None:
        if line.startswith("Step "):
            on_event(label, "building", line)

    result = pipeline.build(
        p.variant.source,
        engine=engine,
        settings=settings,
        # a record names one image: a matrix recipe's variants share its file, so none is written
        options=dataclasses.replace(options, record=options.record and p.variant.id == DEFAULT_ID),
        recipe=p.variant.recipe,
        smoke_engine=smoke_engine,
        say=lambda text: on_event(label, stage[0], text),
        on_line=on_line,
        on_stage=on_stage,
    )
    smoked_on = smoke_engine.base_url if smoke_engine is not None and result.smoke else ""
    pushed = tuple(r.reference for r in result.published.pushed) if result.published else ()
    state = "up-to-date" if result.up_to_date else "built"
    on_event(label, state, f"{result.size_bytes / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    return Outcome(p, state, result, None, time.monotonic() - started, pushed, smoked_on)
