"""Every command the README shows is run: the `$ ...` lines of its console blocks, in order,
in a scratch folder holding a copy of recipes/ (records and locks are written there, not in the
checkout), with `localhost:5000` pointing at a registry started for the test. Each command's
output is checked against what it must say (CHECKS, one per command), not only its exit code.

Run time: the scratch copy of the example names the session's shared base (tests/conftest.py),
so `mlbuild build` finds the session's built image up to date instead of building it again; the
locked build is the one build the README's commands make. The PyTorch wheelhouse build needs the
torch wheel a site keeps on disk: an opt-in heavy build (MLBUILD_SLOW=1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import registry_server as rs
import yaml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_BASE = "mlbuild/debian:bookworm"  # what `bash scripts/quickstart.sh` makes offline


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [line[2:].strip() for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def is_wheelhouse_build(command: str) -> bool:
    return "--wheelhouse" in command


def test_the_quickstart_commands_are_what_ci_runs() -> None:
    """The two quickstart commands are run by .ci/run, on a fresh machine, before the tests."""
    commands = readme_commands()
    assert commands[:2] == ["bash scripts/quickstart.sh", "bash scripts/test.sh"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("bash scripts/quickstart.sh") < ci.index("bash scripts/test.sh")


@dataclass
class Session:
    """What the commands run against, and what earlier commands left for later ones."""

    folder: Path
    registry: str
    engine: Any
    built: Any  # the session's sklearn_build
    pushed: str = ""  # REPOSITORY@DIGEST: set by push, read by pull and k8s


def numeric(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def headline(spec: Any) -> str:
    return f"{spec.name}: {spec.framework} {spec.framework_version}, Python {spec.python}"


def spec_of(session: Session, recipe: str) -> Any:
    from builder.resolve import load_and_resolve

    return load_and_resolve(session.folder / recipe)[1]


def image_spec(session: Session, image: str) -> Any:
    from builder.spec import ResolvedSpec

    return ResolvedSpec.from_labels(session.engine.labels(image))


def check_init(argv: list[str], out: str, session: Session) -> None:
    doc = yaml.safe_load(out)
    if "--from" in argv:  # a recipe for an existing project: beside its file, guessed from its pins
        source = Path(option(argv, "--from"))
        assert doc["requirements"] == source.name
        pins = dict(line.split("==") for line in (session.folder / source).read_text().splitlines() if "==" in line)
        assert (doc["framework"], doc["framework_version"]) == ("sklearn", pins["scikit-learn"])
        recipe = source.parent / "init.yaml"
    else:
        assert (doc["framework"], doc["cuda"]) == (option(argv, "--framework"), option(argv, "--cuda"))
        recipe = Path("init.yaml")
    (session.folder / recipe).write_text(out)  # resolves as written
    spec = spec_of(session, str(recipe))
    assert (spec.framework, spec.cuda) == (doc["framework"], doc["cuda"])
    # a pinned version resolves to itself (init writes "2.6" for a family, a project's exact pin as is)
    assert spec.framework_version.startswith(str(doc["framework_version"]))


def check_resolve(argv: list[str], out: str, session: Session) -> None:
    spec = spec_of(session, argv[2])
    if "--json" in argv:
        assert json.loads(out) == json.loads(spec.to_json())
        return
    cuda = "CPU" if spec.cuda == "cpu" else f"CUDA {spec.cuda} ({spec.variant})"
    assert out.splitlines()[0] == f"{headline(spec)}, {cuda}"
    assert f"base image   {spec.base_image}" in out and "why:" in out


def check_render(argv: list[str], out: str, session: Session) -> None:
    from builder.render import render

    spec = spec_of(session, argv[2])
    assert out == render(spec)
    froms = [line for line in out.splitlines() if line.startswith("FROM ")]
    assert len(froms) >= 2 and froms[-1].startswith(f"FROM {spec.base_image}")


def check_matrix(argv: list[str], out: str, session: Session) -> None:
    """The table lists only releases with that Python and CUDA; the resolver's pick comes first."""
    from builder.recipe import Recipe
    from builder.resolve import resolve

    framework, python, cuda = argv[2], option(argv, "--python"), option(argv, "--cuda")
    rows = [line.split() for line in out.splitlines() if re.match(r"^  \d", line)]
    assert rows, out
    for row in rows:  # release, Pythons (a span such as 3.9-3.13, en dash), default build, builds
        lo, _, hi = row[1].partition("\u2013")
        assert numeric(lo) <= numeric(python) <= numeric(hi or lo), row
        assert any(f"({cuda}/" in cell for cell in row[3:]), row
    pick = resolve(Recipe(name="m", framework=framework, python=python, cuda=cuda))
    assert rows[0][0] == pick.framework_version


def check_build(argv: list[str], out: str, session: Session) -> None:
    lines = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    image = re.findall(r"^image\s+(\S+)$", out, flags=re.M)[0]
    tags = re.findall(r"^tag\s+(\S+)$", out, flags=re.M)
    spec = image_spec(session, image)
    assert f"{spec.repository}:{spec.readable_tag}" in tags
    assert session.engine.image_id(tags[0]) == image
    if "--locked" in argv:  # a new build, from the lock, smoke-tested
        from builder.labels import LOCK_LABEL

        assert lines["smoke"].startswith("passed") and LOCK_LABEL in session.engine.labels(image)
    elif "--wheelhouse" in argv:
        assert lines["smoke"].startswith("passed") or lines.get("status") == "up to date"
    else:  # the session's shared image, reused
        assert image == session.built.image_id and lines["status"] == "up to date"
        assert set(tags) == set(session.built.tags)


def check_smoke(argv: list[str], out: str, session: Session) -> None:
    spec = image_spec(session, argv[2])
    checks, gpu = out.splitlines()[:-1], out.splitlines()[-1]
    assert checks and all(line.startswith("ok ") for line in checks), out
    assert f"ok   framework.import: import {spec.import_name} {spec.framework_version}" in checks
    assert gpu.startswith("GPU: not-applicable") if spec.cuda == "cpu" else gpu.startswith("GPU: ")


def check_inspect(argv: list[str], out: str, session: Session) -> None:
    spec = image_spec(session, argv[2])
    assert out.startswith(headline(spec))
    assert f"image     {session.engine.image_id(argv[2])}" in out
    assert re.search(r"^  smoke     passed", out, flags=re.M)


def check_doctor(argv: list[str], out: str, session: Session) -> None:
    assert re.search(r"^ok\s+Docker engine \d+\.\d+", out, flags=re.M), out
    assert re.search(r"free at ", out)


def check_push(argv: list[str], out: str, session: Session) -> None:
    target = option(argv, "--to")
    [digest] = re.findall(rf"^pushed\s+{re.escape(target)}@(sha256:[0-9a-f]{{64}})\s", out, flags=re.M)
    record = session.folder / Path(option(argv, "--recipe")).with_suffix(".image.json")
    assert f"record  {record.relative_to(session.folder)}" in out
    assert digest in record.read_text()
    session.pushed = f"{target}@{digest}"


def check_pull(argv: list[str], out: str, session: Session) -> None:
    spec = spec_of(session, argv[2])
    assert session.pushed, "pull runs after push"
    assert out.startswith(f"{session.pushed}: {spec.name}, {spec.framework} {spec.framework_version}")


def check_lock(argv: list[str], out: str, session: Session) -> None:
    from builder.lock import lock_path, read_lock

    recipe = session.folder / argv[2]
    assert out.startswith(f"wrote {lock_path(recipe).relative_to(session.folder)}: ")
    pins = {p.name: p for p in read_lock(recipe).python}
    spec = spec_of(session, argv[2])
    assert pins[spec.distribution].version == spec.framework_version and pins[spec.distribution].hashes


def check_diff(argv: list[str], out: str, session: Session) -> None:
    a, b = argv[2], argv[3]
    assert out.startswith(f"a  {a} sha256:") and f"\nb  {b} sha256:" in out
    spec = image_spec(session, b)
    assert "Python packages:" in out and f"  + {spec.distribution} {spec.framework_version}" in out


def check_matrix_plan(argv: list[str], out: str, session: Session) -> None:
    include = json.loads(out)["include"]
    names = {yaml.safe_load(p.read_text())["name"] for p in (session.folder / argv[2]).glob("*.yaml")}
    assert {e["name"] for e in include} == names
    assert all(e["runner"] == ("gpu" if e["gpu"] else "ubuntu-latest") for e in include)


def check_k8s(argv: list[str], out: str, session: Session) -> None:
    doc = yaml.safe_load(out)
    assert doc["kind"] == "Job"
    [container] = doc["spec"]["template"]["spec"]["containers"]
    assert container["image"] == session.pushed  # by digest, from the push record


CHECKS: dict[str, Callable[[list[str], str, Session], None]] = {
    "init": check_init, "resolve": check_resolve, "render": check_render, "matrix": check_matrix,
    "build": check_build, "smoke": check_smoke, "inspect": check_inspect, "doctor": check_doctor,
    "push": check_push, "pull": check_pull, "lock": check_lock, "diff": check_diff,
    "matrix-plan": check_matrix_plan, "k8s": check_k8s,
}  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    reg = rs.start_registry(tmp_path_factory.mktemp("readme-registry"))
    yield reg
    reg.stop()


@pytest.fixture
def session(tmp_path: Path, registry: rs.Registry, engine: Any, bookworm_base: str, sklearn_build: Any) -> Session:
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    example = tmp_path / "recipes" / "sklearn-cpu.yaml"
    example.write_text(example.read_text() + f"base_image: {bookworm_base}\n")  # the session's base
    if not engine.image_id(QUICKSTART_BASE):  # the README's diff names the quickstart's base
        repo, _, tag = QUICKSTART_BASE.rpartition(":")
        engine.tag(engine.image_id(bookworm_base), repo, tag)
    return Session(tmp_path, registry.host, engine, sklearn_build)


def run(command: str, session: Session) -> None:
    command, _, note = command.partition("#")
    expected = int(m.group(1)) if (m := re.match(r"\s*exit (\d+)", note)) else 0
    line = command.strip().replace("localhost:5000", session.registry)
    argv = line.split()
    assert argv[0] == "mlbuild", line
    assert argv[1] in CHECKS, f"no output check for `{line}`: add one to CHECKS"
    done = subprocess.run([sys.executable, "-m", "builder", *argv[1:]], cwd=session.folder,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == expected, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, line
    CHECKS[argv[1]](argv, done.stdout, session)


def test_every_readme_command_runs_and_says_what_it_should(session: Session) -> None:
    commands = [c for c in readme_commands()[2:] if not is_wheelhouse_build(c)]  # the quickstart pair: above
    assert len(commands) >= 15
    for command in commands:
        run(command, session)


@pytest.mark.slow
def test_the_readme_wheelhouse_build(session: Session) -> None:
    [command] = [c for c in readme_commands() if is_wheelhouse_build(c)]
    wheelhouse = Path(command.split("--wheelhouse", 1)[1].split()[0])
    if not any(wheelhouse.glob("torch-*.whl")):
        pytest.fail(f"MLBUILD_SLOW=1 builds `{command}`: no torch wheel in {wheelhouse}", pytrace=False)
    run(command, session)
