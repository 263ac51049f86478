"""Faults: an engine that does not answer, one stopped mid-build, a full disk, interrupted
builds (SIGINT, SIGTERM) and two builds of one recipe at once.

Everything that breaks an engine runs on engines of its own: a second dockerd on a TCP
loopback port with its own data root (tests/integration/registry_server.Teammate), never the
shared one. Their build steps use the host's network (`--network host`), so they need no NAT.
The first tests also check the cleanup code (builder/cleanup.py) with a fake engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import registry_server as rs
import required_tools

from builder.render import TOOLS

ROOT = Path(__file__).resolve().parents[2]
REPO = "mlbuild/fault-probe"
RECIPE = """\
name: fault-probe
framework: sklearn
framework_version: "1.5"
python: "3.11"
cuda: cpu
packages: [{package}]
smoke:
  run: ["sleep {sleep}"]
"""
# uv's install steps (the default installer), not its install of the venv's pip
# (the classic builder's "Step 7/13 : RUN ...", BuildKit's "#12 [builder  7/13] RUN --mount=... [...]")
INSTALL_STEP = re.compile(  # uv runs under layersplit.py's link wrapper (after its "--")
    r"(Step \d+/\d+\b|\[builder +\d+/\d+\]).*RUN (--mount=\S+ )*\[.*"
    + re.escape(f'"--", "{TOOLS}/uv", "pip", "install"')
)
integration = pytest.mark.integration


# -- cleanup code, with a fake engine (no Docker) --------------------------------------------------
class _TagFake:
    def __init__(self, fail_at: int):
        self.tags: list[str] = []
        self.removed: list[str] = []
        self.fail_at = fail_at

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        if len(self.tags) == self.fail_at:
            from builder.cleanup import Interrupted

            raise Interrupted(signal.SIGTERM)
        self.tags.append(f"{repository}:{tag}")

    def remove_image(self, ref: str, force: bool = False) -> None:
        self.removed.append(ref)


def _spec() -> Any:
    from builder.resolve import load_and_resolve

    return load_and_resolve(ROOT / "recipes" / "sklearn-cpu.yaml")[1]


def test_interrupted_tagging_removes_the_tags_it_set() -> None:
    from builder.cleanup import Interrupted
    from builder.pipeline import tag_image

    fake = _TagFake(fail_at=2)
    with pytest.raises(Interrupted) as info:
        tag_image(fake, "sha256:" + "a" * 64, _spec(), "spec-0123", ("registry:5000/x/y:v1",))  # type: ignore[arg-type]
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert len(fake.tags) == 2 and fake.removed == fake.tags


def test_finished_tagging_is_left_alone() -> None:
    from builder.pipeline import tag_image

    fake = _TagFake(fail_at=99)
    done = tag_image(fake, "sha256:" + "a" * 64, _spec(), "spec-0123", ())  # type: ignore[arg-type]
    assert len(done) == 2 and fake.removed == []


def test_sigterm_unwinds_like_ctrl_c() -> None:
    from builder.cleanup import Interrupted, install_signal_handlers

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert install_signal_handlers()
        unwound = []
        with (
            pytest.raises(Interrupted),
            tempfile.TemporaryDirectory(prefix="mlbuild-context-") as tmp,
        ):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here
            finally:
                unwound.append(tmp)
        assert unwound and not Path(unwound[0]).exists()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -- real engines ----------------------------------------------------------------------------
@dataclass
class Run:
    """An `mlbuild` process whose stderr is read line by line as it comes."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    stdout: str = ""

    def wait_line(self, pattern: re.Pattern[str], seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if pattern.search(line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern.pattern!r}:\n" + "\n".join(self.lines[-30:]))

    def finish(self, seconds: float) -> int:
        rc = self.proc.wait(seconds)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()
        return rc

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    _reader: threading.Thread = field(init=False, repr=False)


def start_mlbuild(*args: str, env: dict[str, str]) -> Run:
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    run = Run(proc)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            run.lines.append(line.rstrip("\n"))

    run._reader = threading.Thread(target=read, daemon=True)
    run._reader.start()
    return run


def clean_failure(run: Run) -> None:
    """A failure users can read: an `error:` line and no traceback."""
    assert "Traceback" not in run.stderr + run.stdout, run.stderr[-3000:]
    assert re.search(r"^error: ", run.stderr, re.M), run.stderr[-3000:]


def error_line(run: Run) -> str:
    """mlbuild's own error line (the build's streamed output may hold the installer's)."""
    found = re.search(r"^error: (.*)$", run.stderr, re.M)
    assert found, run.stderr[-3000:]
    return found.group(1)


def eventually(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.5)


@dataclass
class Spare:
    """A private engine, the environment that reaches it and a TMPDIR of its own."""

    teammate: rs.Teammate
    env: dict[str, str]
    tmp: Path
    base: str

    @property
    def api(self) -> Any:
        import docker

        return docker.APIClient(base_url=self.teammate.base_url, timeout=60)

    def containers(self) -> list[dict[str, Any]]:
        return list(self.api.containers(all=True))

    def tags(self, repository: str = REPO) -> list[str]:
        return [t for img in self.api.images() for t in img.get("RepoTags") or [] if t.startswith(repository + ":")]

    def contexts(self) -> list[Path]:
        return sorted(self.tmp.glob("mlbuild-context-*"))

    def build(self, recipe: Path, *extra: str) -> Run:
        return start_mlbuild(
            "build",
            str(recipe),
            "--base-image",
            self.base,
            "--network",
            "host",
            *extra,
            env=self.env,
        )


def unmount_below(folder: Path) -> None:
    """A stopped dockerd leaves its network namespace mounted under exec/: rmtree cannot."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{folder}/")), reverse=True):
        subprocess.run(["umount", point], capture_output=True)


def stop_spare(spare: Spare) -> None:
    rs._stop(spare.teammate.proc, 20)
    subprocess.run(["ip", "link", "del", spare.teammate.bridge], capture_output=True)
    unmount_below(spare.teammate.folder)


def start_spare(folder: Path, bookworm_base: str) -> Spare:
    teammate = rs.Teammate(folder, rs.free_port()).start()
    # The classic builder by default: these faults are timed by the step containers the engine
    # lists, which BuildKit does not make (its own test passes --builder buildkit).
    env = {**os.environ, "DOCKER_HOST": teammate.base_url, "MLBUILD_BUILDER": "classic"}
    try:
        save = subprocess.Popen(["docker", "save", bookworm_base], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "load"],
            stdin=save.stdout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        save.wait(60)
        assert load.returncode == 0, load.stderr
    except BaseException:
        teammate.stop()
        unmount_below(folder)
        raise
    tmp = folder / "tmp"
    tmp.mkdir()
    return Spare(teammate, {**env, "TMPDIR": str(tmp)}, tmp, bookworm_base)


@pytest.fixture(scope="module")
def spare(bookworm_base: str) -> Iterator[Spare]:
    folder = Path(tempfile.mkdtemp(prefix="mlb-fault-", dir="/tmp"))  # short: socket paths
    engine = start_spare(folder, bookworm_base)
    yield engine
    stop_spare(engine)
    shutil.rmtree(folder, ignore_errors=True)


def write(folder: Path, name: str, package: str, sleep: int) -> Path:
    path = folder / name
    path.write_text(RECIPE.format(package=package, sleep=sleep))
    return path


@integration
def test_unreachable_engine_is_a_clean_exit_1(tmp_path: Path) -> None:
    recipe = write(tmp_path, "r.yaml", "pandas==2.2.3", 0)
    env = {
        **os.environ,
        "DOCKER_HOST": f"tcp://127.0.0.1:{rs.free_port()}",
        "TMPDIR": str(tmp_path),
    }
    run = start_mlbuild("build", str(recipe), env=env)
    assert run.finish(60) == 1
    clean_failure(run)
    assert "no Docker engine answers at tcp://127.0.0.1:" in run.stderr
    assert not list(tmp_path.glob("mlbuild-context-*"))


@integration
def test_sigint_mid_build_leaves_nothing_behind(spare: Spare, tmp_path: Path) -> None:
    recipe = write(tmp_path, "r.yaml", "pandas==2.2.3", 15)
    run = spare.build(recipe)
    run.wait_line(INSTALL_STEP, 240)
    eventually(spare.containers, 60, "the pip step's container")  # it is mid-step
    assert spare.contexts(), "the build context exists while building"
    run.proc.send_signal(signal.SIGINT)
    assert run.finish(60) == 130
    clean_failure(run)
    assert "error: interrupted" in run.stderr
    eventually(lambda: not spare.containers(), 30, "the engine removed the step's container")
    assert spare.contexts() == []
    assert spare.tags() == []


@integration
def test_sigint_mid_buildkit_build_leaves_nothing_behind(spare: Spare, tmp_path: Path) -> None:
    """BuildKit runs in the engine, driven by the docker CLI: Ctrl-C stops the CLI, which cancels
    the build; mlbuild exits 130 with no context, tag or CLI process left."""
    recipe = write(tmp_path, "r.yaml", "pandas==2.2.3", 15)
    run = spare.build(recipe, "--builder", "buildkit")
    run.wait_line(INSTALL_STEP, 240)  # this engine's BuildKit cache is empty: the step runs
    time.sleep(3)
    cli = subprocess.run(["pgrep", "-P", str(run.proc.pid)], capture_output=True, text=True).stdout.split()
    assert cli, "the docker CLI runs the build"
    run.proc.send_signal(signal.SIGINT)
    assert run.finish(60) == 130
    clean_failure(run)
    assert "error: interrupted" in run.stderr
    assert not [pid for pid in cli if Path(f"/proc/{pid}").exists()], "the docker CLI was stopped"
    assert spare.contexts() == []
    assert spare.tags() == []


@integration
def test_sigterm_mid_smoke_then_the_next_run_works(spare: Spare, tmp_path: Path) -> None:
    recipe = write(tmp_path, "r.yaml", "pandas==2.2.3", 15)
    run = spare.build(recipe)

    def sleeping() -> list[dict[str, Any]]:
        return [c for c in spare.api.containers(filters={"label": "org.mlbuild.temporary=1"})
                if "sleep" in str(c.get("Command"))]  # fmt: skip

    eventually(sleeping, 420, "the smoke command's container")
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(60) == 128 + signal.SIGTERM
    clean_failure(run)
    assert "error: interrupted (SIGTERM)" in run.stderr
    temporary = {"label": "org.mlbuild.temporary=1"}
    eventually(lambda: not spare.api.containers(all=True, filters=temporary),
               30, "the temporary container is removed")  # fmt: skip
    assert spare.contexts() == []
    assert spare.tags() == [], "an image whose smoke test was cut short is not tagged"

    again = spare.build(recipe, "--json")
    assert again.finish(420) == 0, again.stderr[-3000:]
    doc = json.loads(again.stdout)
    assert doc["smoke"]["passed"] and sorted(spare.tags()) == sorted(doc["tags"])
    assert spare.contexts() == [] and spare.containers() == []


@integration
def test_two_builds_of_one_recipe_at_once(spare: Spare, tmp_path: Path) -> None:
    recipe = write(tmp_path, "r.yaml", "pandas==2.2.3", 1)
    runs = [spare.build(recipe, "--json", "--rebuild") for _ in range(2)]
    codes = [r.finish(420) for r in runs]
    assert codes == [0, 0], "\n".join(r.stderr[-2000:] for r in runs)
    docs = [json.loads(r.stdout) for r in runs]
    assert docs[0]["tags"] == docs[1]["tags"] and docs[0]["content_tag"] == docs[1]["content_tag"]
    ids = {d["image_id"] for d in docs}
    for tag in docs[0]["tags"]:  # every tag names one of the two tested images, in one piece
        attrs = spare.api.inspect_image(tag)
        assert attrs["Id"] in ids
        labels = attrs["Config"]["Labels"]
        assert labels["org.mlbuild.content"] == docs[0]["content_tag"]
        json.loads(labels["org.mlbuild.spec"])
    inspect = start_mlbuild("inspect", docs[0]["tags"][0], "--json", env=spare.env)
    assert inspect.finish(60) == 0, inspect.stderr
    assert json.loads(inspect.stdout)["spec"]["name"] == "fault-probe"
    assert spare.contexts() == [] and spare.containers() == []


@integration
def test_engine_stopped_mid_build(spare: Spare, tmp_path: Path) -> None:
    """Last on the spare engine: it is stopped (SIGTERM, as `systemctl stop docker` does)."""
    recipe = write(tmp_path, "r.yaml", "pandas==2.2.2", 1)  # another pin: the pip step runs
    run = spare.build(recipe)
    eventually(lambda: any(INSTALL_STEP.search(x) and '"-c"' in x for x in run.lines), 240, "the packages step")
    eventually(spare.containers, 60, "the pip step's container")
    assert spare.teammate.proc is not None
    os.killpg(spare.teammate.proc.pid, signal.SIGTERM)
    assert run.finish(120) == 1
    clean_failure(run)
    assert re.search(r"engine", error_line(run)), run.stderr[-2000:]
    assert spare.contexts() == []
    spare.teammate.proc.wait(60)
    # Started again on the same data root: no tag of this build, no temporary container. The
    # engine itself may keep the step container it could not remove while stopping (exited):
    # mlbuild cannot remove it then, and does not guess later which unlabeled ones are its own.
    subprocess.run(["ip", "link", "del", spare.teammate.bridge], capture_output=True)
    spare.teammate.start()
    for tag in spare.tags():
        spec = json.loads(spare.api.inspect_image(tag)["Config"]["Labels"]["org.mlbuild.spec"])
        assert spec["requirements"] == ["pandas==2.2.3"], f"{tag} names the stopped build"
    assert not spare.api.containers(all=True, filters={"label": "org.mlbuild.temporary=1"})
    for c in spare.containers():
        assert c["State"] != "running" and "/tmp/mlbuild/" in c["Command"], c


@pytest.fixture
def small_disk(bookworm_base: str) -> Iterator[Spare]:
    """A private engine whose data root is a 400 MB ext4 file system on a loop device."""
    folder = Path(tempfile.mkdtemp(prefix="mlb-disk-", dir="/tmp"))
    image, data = folder.parent / (folder.name + ".img"), folder / "data"
    data.mkdir()
    subprocess.run(["truncate", "-s", "400M", str(image)], check=True)
    subprocess.run([required_tools.tool("mkfs.ext4"), "-q", "-F", str(image)], check=True, capture_output=True)
    required_tools.root("a loop-mounted file system")
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(data)], capture_output=True, text=True)
    if mounted.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        image.unlink()
        pytest.fail(f"cannot mount a loop file system: {mounted.stderr.strip()}", pytrace=False)
    engine = None
    try:
        engine = start_spare(folder, bookworm_base)
        yield engine
    finally:
        if engine is not None:
            stop_spare(engine)
        unmount_below(folder)  # the loop file system too
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            image.unlink()


@integration
def test_full_disk_on_the_engine_is_a_clear_message(small_disk: Spare, tmp_path: Path) -> None:
    recipe = write(tmp_path, "r.yaml", "pandas==2.2.3", 0)
    run = small_disk.build(recipe)
    assert run.finish(420) == 1
    clean_failure(run)
    first = error_line(run)
    assert "disk" in first or "no space left" in first, run.stderr[-3000:]
    assert "no space left on device" in run.stderr
    assert small_disk.contexts() == []
    assert small_disk.tags() == []
