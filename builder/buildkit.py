"""BuildKit through the docker CLI: which CLI can drive it, and a build that runs it.

The SDK speaks only the classic builder's API, so a BuildKit build runs the docker CLI (an
argument list, never a shell) against the same engine (the same DOCKER_HOST, inherited), with
`--progress=plain` so that its output streams line by line into the caller's `on_line`.

Which CLI: every `docker` on PATH, in order, is probed, never assumed by its path: one whose
`buildx version` answers drives BuildKit through buildx (the engine's own builder, so local
base images are found); one that accepts `DOCKER_BUILDKIT=1 docker build --help` (Debian's
20.10 CLI) drives the engine's built-in BuildKit. A newer CLI without the buildx plugin refuses
both, and the classic builder (through the SDK) stays.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder import hostcache
from builder.engine_api import BuilderProbe, BuildKitRun, Engine, LineSink
from builder.errors import BuildError, EngineError, UsageError, step_details
from builder.progress import KIT_STEP_RE
from builder.render import PIP_CONF_SECRET, UV_TOML_SECRET
from builder.settings import BUILDERS, redact

Runner = Callable[[list[str], dict[str, str]], tuple[int, str]]  # argv, extra env -> (rc, output)

# "#12 [builder 4/6] RUN [...]" or "#3 [internal] load metadata ...": a vertex of the build graph.
_VERTEX_RE = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$")
_FAILED_RE = re.compile(r"^#(\d+) ERROR\b")
_OUTPUT_RE = re.compile(r"^#(\d+) (?:\d+\.\d+ )?(.*)$")


@dataclass(frozen=True)
class BuilderChoice:
    """What a build will use: `builder` is buildkit or classic; `reason` says why."""

    builder: str
    reason: str
    probe: BuilderProbe | None = None

    @property
    def buildkit(self) -> bool:
        return self.builder == "buildkit"


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, env={**os.environ, **env}, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, done.stdout + done.stderr


def docker_clis(path: str | None = None) -> list[str]:
    """Every `docker` executable on PATH, in PATH order, each file once."""
    seen: dict[str, str] = {}
    for folder in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        found = shutil.which("docker", path=folder) if folder else None
        if found and os.path.realpath(found) not in seen:
            seen[os.path.realpath(found)] = found
    return list(seen.values())


def probe_clis(clis: Sequence[str], run: Runner = _run) -> BuilderProbe:
    """The first CLI that can drive BuildKit, or an empty probe whose `reason` says why none can."""
    if not clis:
        return BuilderProbe(reason="no docker CLI on PATH (the SDK's classic builder needs none)")
    refusals = []
    for cli in clis:
        rc, out = run([cli, "buildx", "version"], {})
        if rc == 0:
            version = out.strip().splitlines()[0] if out.strip() else "buildx"
            return BuilderProbe(
                cli=cli, argv=(cli, "buildx", "build", "--builder", "default", "--load"),
                reason=f"{cli} has buildx ({version[:80]})",
            )  # fmt: skip
        rc, out = run([cli, "build", "--help"], {"DOCKER_BUILDKIT": "1"})
        if rc == 0 and "--secret" in out and "--progress" in out:
            return BuilderProbe(
                cli=cli, argv=(cli, "build"), env=(("DOCKER_BUILDKIT", "1"),),
                reason=f"{cli} drives the engine's BuildKit with DOCKER_BUILDKIT=1 (no buildx plugin needed)",
            )  # fmt: skip
        said = next((line.strip() for line in out.splitlines() if line.strip()), f"exit {rc}")
        refusals.append(f"{cli}: no buildx, and DOCKER_BUILDKIT=1 refused ({said[:100]})")
    return BuilderProbe(reason="; ".join(refusals))


# Where the docker CLI finds its buildx plugin (besides config.json's cliPluginsExtraDirs).
PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
               "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")  # fmt: skip


def probe_clis_remembered(clis: Sequence[str], run: Runner = _run) -> BuilderProbe:
    """probe_clis, remembered (builder.hostcache) for these very CLI binaries, buildx plugins
    and docker config: the probe launches a CLI up to four times, most of a no-op build."""
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    plugins = [str(config / "cli-plugins" / "docker-buildx")] + [f"{d}/docker-buildx" for d in PLUGIN_DIRS]
    entry = hostcache.key("buildkit-probe", [hostcache.file_identity(p) for p in [*clis, *plugins]],
                          hostcache.file_identity(str(config / "config.json")))  # fmt: skip
    seen = hostcache.get("probes", entry)
    if isinstance(seen, dict):
        try:
            return BuilderProbe(cli=seen["cli"], argv=tuple(seen["argv"]),
                                env=tuple((k, v) for k, v in seen["env"]), reason=seen["reason"])  # fmt: skip
        except (KeyError, TypeError, ValueError):
            pass  # another version's entry: probe again
    found = probe_clis(clis, run)
    hostcache.put("probes", entry, dataclasses.asdict(found))
    return found


def engine_supports(version: dict[str, object]) -> str:
    """Why the engine cannot run BuildKit builds, or "" when it can (Linux, 18.09 or newer)."""
    os_name = str(version.get("Os") or "linux")
    if os_name != "linux":
        return f"the engine runs {os_name} containers (BuildKit here builds Linux images only)"
    numbers = re.findall(r"\d+", str(version.get("Version") or "0"))[:2]
    major, minor = (int(numbers[0]), int(numbers[1])) if len(numbers) == 2 else (0, 0)
    if (major, minor) < (18, 9):
        return f"engine {version.get('Version')} is older than 18.09 (no BuildKit)"
    return ""


def choose(requested: str, probe: BuilderProbe) -> BuilderChoice:
    """auto: BuildKit when a CLI can drive it, else classic; buildkit: that or a clear error."""
    if requested not in BUILDERS:
        raise UsageError(f"builder {requested!r} is not one of {', '.join(BUILDERS)}", hint="--builder auto")
    if requested == "classic":
        return BuilderChoice("classic", "asked for (--builder classic or the site config)")
    if probe.cli:
        return BuilderChoice("buildkit", ("asked for: " if requested == "buildkit" else "auto: ") + probe.reason, probe)
    if requested == "buildkit":
        raise UsageError(
            "--builder buildkit: no docker CLI here can drive BuildKit",
            details=[probe.reason],
            hint="install the buildx plugin (or Debian's docker.io CLI), or use --builder classic",
        )
    return BuilderChoice("classic", f"auto: {probe.reason}")


def choose_for(engine: Engine, requested: str | None, site: str | None) -> BuilderChoice:
    """The builder asked for (else the site's, else auto) on `engine`; classic needs no probe."""
    wanted = requested or site or "auto"
    return choose(wanted, BuilderProbe() if wanted == "classic" else engine.buildkit_probe())


def run_for(
    chosen: BuilderChoice, secrets: Path, *, cache_from: tuple[str, ...] = (), inline_cache: bool = True
) -> BuildKitRun | None:
    """The BuildKit run of `chosen` (None: classic): the site's pip.conf and uv.toml, written by
    BuildSettings.write_build_settings into `secrets`, goes in as a BuildKit secret."""
    if not chosen.buildkit or chosen.probe is None:
        return None
    files = ((PIP_CONF_SECRET, str(secrets / "pip.conf")), (UV_TOML_SECRET, str(secrets / "uv.toml")))
    return BuildKitRun(chosen.probe.argv, chosen.probe.env, secrets=files, cache_from=cache_from,
                       inline_cache=inline_cache)  # fmt: skip


@dataclass
class PlainLog:
    """`--progress=plain` output, kept to explain a failure: each step's name and last lines."""

    names: dict[str, str] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)
    failed: str = ""
    tail: list[str] = field(default_factory=list)  # the build's last lines, whatever the vertex

    def add(self, line: str) -> None:
        self.tail.append(line)
        del self.tail[:-40]
        m = _VERTEX_RE.match(line)
        if m:
            self.names.setdefault(m.group(1), m.group(2))
            return
        m = _FAILED_RE.match(line)  # BuildKit's own verdict; a step's output has a time stamp first
        if m and not self.failed:
            self.failed = m.group(1)
        m = _OUTPUT_RE.match(line)
        if not m:
            return
        vertex, text = m.group(1), m.group(2)
        kept = self.lines.setdefault(vertex, [])
        kept.append(text)
        del kept[:-40]

    def error(self, rc: int) -> BuildError:
        if self.failed:
            step = self.names.get(self.failed, f"step #{self.failed}")
            verdicts = ("error:", "failed to solve", "executor failed", "ERROR")
            outcome = [line for line in self.tail if line.startswith(verdicts)]
            return BuildError(
                f"build failed at {step}",
                details=[*step_details(self.lines.get(self.failed, [])), *outcome[-2:]],
                hint="the lines above are the failing step's last output",
            )
        return BuildError(f"the BuildKit build failed (exit {rc})", details=self.tail[-15:])


def step_line(line: str) -> bool:
    """A line that starts a Dockerfile step (`#7 [builder 3/6] RUN ...`), not internal work."""
    return bool(KIT_STEP_RE.match(line))


def build_args(
    kit: BuildKitRun,
    context: Path,
    iidfile: Path,
    *,
    labels: dict[str, str],
    buildargs: dict[str, str],
    nocache: bool,
    network: str | None,
    platform: str | None = None,
) -> list[str]:
    """The CLI's argument list (values are single arguments: nothing reaches a shell)."""
    argv = [*kit.argv, "--progress=plain", "--iidfile", str(iidfile)]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    for key, value in sorted(buildargs.items()):
        argv += ["--build-arg", f"{key}={value}"]
    if kit.inline_cache:
        argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
    for ref in kit.cache_from:
        argv += ["--cache-from", ref]
    for secret_id, path in kit.secrets:
        argv += ["--secret", f"id={secret_id},src={path}"]
    if nocache:
        argv.append("--no-cache")
    if network:
        argv += ["--network", network]
    if platform:  # another os/arch than the engine's: its RUN steps emulated (QEMU)
        argv += ["--platform", platform]
    return [*argv, str(context)]


def build_with_cli(
    kit: BuildKitRun,
    context: Path,
    *,
    labels: dict[str, str] | None = None,
    buildargs: dict[str, str] | None = None,
    on_line: LineSink | None = None,
    nocache: bool = False,
    network: str | None = None,
    platform: str | None = None,
) -> str:
    """Run the BuildKit build, streaming its lines (URL credentials hidden, as everywhere);
    return the image ID (from --iidfile)."""
    with tempfile.TemporaryDirectory(prefix="mlbuild-buildkit-") as tmp:
        iidfile = Path(tmp) / "iid"
        argv = build_args(kit, context, iidfile, labels=labels or {}, buildargs=buildargs or {},
                          nocache=nocache, network=network, platform=platform)  # fmt: skip
        log = PlainLog()
        try:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                env={**os.environ, **dict(kit.env)}, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            raise EngineError(f"cannot run {kit.argv[0]}", details=[str(exc)]) from None
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = redact(raw.rstrip("\n"))
                if not line.strip():
                    continue
                log.add(line)
                if on_line:
                    on_line(line)
            rc = proc.wait()
        except BaseException:  # Ctrl-C, SIGTERM: the CLI cancels the build when it stops
            proc.terminate()
            proc.wait(timeout=30)
            raise
        if rc != 0:
            raise log.error(rc)
        image_id = iidfile.read_text().strip() if iidfile.exists() else ""
    if not image_id.startswith("sha256:"):
        raise BuildError("the BuildKit build ended without an image", details=log.tail[-10:])
    return image_id
