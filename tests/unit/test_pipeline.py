"""builder.pipeline (build -> smoke -> tag -> push) and builder.base's choice of base, on the
in-memory engine and registry of fakes.py: what is built, what is tagged when, what is
pushed and recorded, and which base a build starts from."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, FakeRegistry, passing_probe

from builder import base, pipeline, publish, records
from builder.errors import EngineError, ResolveError, SmokeFailed, UsageError
from builder.labels import BASE_SUITE_LABEL, CONTENT_LABEL, SPEC_LABEL
from builder.pipeline import BuildOptions, build
from builder.resolve import load_and_resolve
from builder.settings import BuildSettings

RECIPE = """\
name: demo
framework: sklearn
framework_version: "1.5"
python: "3.11"
cuda: cpu
packages: [pandas==2.2.3]
smoke:
  run: ["python -c 'import pandas'"]
"""
BASE = "debian:bookworm-slim"  # what the recipe resolves to


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # smoke results go here


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.add_image(BASE)
    return fake


def run(engine: FakeEngine, recipe: Path, **options: Any) -> Any:
    said: list[str] = []
    stages: list[str] = []
    result = build(recipe, engine=engine, settings=BuildSettings(), options=BuildOptions(**options),
                   say=said.append, on_stage=stages.append)  # fmt: skip
    return result, said, stages


# -- build, smoke, tag -------------------------------------------------------------------------
def test_a_build_is_smoke_tested_then_tagged(engine: FakeEngine, recipe: Path) -> None:
    untagged_at_smoke: list[bool] = []

    def probe(spec: dict[str, Any]) -> dict[str, Any]:
        image = engine.runs[-1][0]
        untagged_at_smoke.append(engine.tags_of(image) == [])
        return passing_probe(spec)

    engine.probe = probe
    result, said, stages = run(engine, recipe, extra_tags=("127.0.0.1:5000/team/demo:v1",))
    assert len(engine.builds) == 1 and engine.builds[0].startswith("# Rendered by mlbuild")
    assert untagged_at_smoke == [True]  # the probe ran on an image with no tag at all
    assert result.smoke is not None and result.smoke.passed and not result.up_to_date
    assert result.tags == (
        "mlbuild/demo:sklearn1.5.2-py3.11-cpu",
        f"mlbuild/demo:{result.content_tag}",
        "127.0.0.1:5000/team/demo:v1",
    )
    assert all(engine.image_id(t) == result.image_id for t in result.tags)
    labels = engine.labels(result.image_id)
    assert labels[CONTENT_LABEL] == result.content_tag and json.loads(labels[SPEC_LABEL])["name"] == "demo"
    assert stages == ["resolving", "building", "smoke", "tagging"]
    assert any(s.startswith("smoke test of") for s in said)
    assert [cmd[-1] for _, cmd in engine.runs[1:]] == ["python -c 'import pandas'"]  # the recipe's smoke.run


def test_a_failed_smoke_test_leaves_the_image_untagged(engine: FakeEngine, recipe: Path) -> None:
    def probe(spec: dict[str, Any]) -> dict[str, Any]:
        return {**passing_probe(spec), "framework": {"version": "1.4.0", "cuda_build": None}}

    engine.probe = probe
    with pytest.raises(SmokeFailed, match="left untagged") as info:
        run(engine, recipe, push=True)
    assert info.value.exit_code == 3
    assert any("1.5.2 expected, found 1.4.0" in d for d in info.value.details)
    built = [i for i in engine.images if engine.labels(i).get(SPEC_LABEL)]
    assert len(built) == 1 and engine.tags_of(built[0]) == []  # built, tested, never named
    assert engine.pushed == []


def test_no_smoke_tags_without_testing(engine: FakeEngine, recipe: Path) -> None:
    result, _, stages = run(engine, recipe, run_smoke=False)
    assert result.smoke is None and engine.runs == [] and "smoke" not in stages
    assert engine.image_id(result.tags[0]) == result.image_id


def test_push_needs_the_smoke_test() -> None:
    with pytest.raises(UsageError, match="--push needs the smoke test"):
        BuildOptions(push=True, run_smoke=False)
    with pytest.raises(UsageError, match="--tag"):
        BuildOptions(extra_tags=("Not A Reference",))


# -- build avoidance -------------------------------------------------------------------------
def test_the_same_content_tag_is_not_built_again(engine: FakeEngine, recipe: Path) -> None:
    first, _, _ = run(engine, recipe)
    engine.remove_image(first.tags[0])  # the readable tag moved away meanwhile
    again, said, stages = run(engine, recipe)
    assert len(engine.builds) == 1 and len(engine.runs) == 2  # one build, one smoke test (probe + run:)
    assert again.up_to_date and again.image_id == first.image_id and again.content_tag == first.content_tag
    assert again.smoke is None and "building" not in stages
    assert engine.image_id(first.tags[0]) == first.image_id  # tagged again
    assert f"up to date: {first.tags[0]} (nothing built)" in said


def test_other_content_gets_another_tag_and_rebuild_builds(engine: FakeEngine, recipe: Path) -> None:
    first, _, _ = run(engine, recipe)
    forced, _, _ = run(engine, recipe, reuse=False)
    assert len(engine.builds) == 2 and not forced.up_to_date
    recipe.write_text(RECIPE.replace("pandas==2.2.3", "pandas==2.2.2"))
    changed, _, _ = run(engine, recipe)
    assert len(engine.builds) == 3 and changed.content_tag != first.content_tag


def test_only_a_build_fetches_uv_and_pip_and_copies_the_files(
    engine: FakeEngine, recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An up-to-date image needs no installer (a machine that cannot reach the index still
    finds it) and no copy of the recipe's files (model weights of GBs): their digest is read
    where they are."""
    fetched: list[str] = []
    stand_in = pipeline.fetch_tools  # tests/unit/conftest.py's
    monkeypatch.setattr(pipeline, "fetch_tools", lambda spec, settings, say: fetched.append(spec.name)
                        or stand_in(spec, settings, say))  # fmt: skip
    placed: list[list[str]] = []
    place = pipeline.place_sources
    monkeypatch.setattr(pipeline, "place_sources", lambda folder, sources: placed.append([r for r, _ in sources])
                        or place(folder, sources))  # fmt: skip
    (recipe.parent / "serve.py").write_text("print('serve')\n")
    recipe.write_text(RECIPE + "files:\n  - {src: serve.py, dest: /srv/serve.py}\n")
    run(engine, recipe)
    assert fetched == ["demo"] and '"/tmp/mlbuild-build/tools/uv", "pip", "install"' in engine.builds[-1]
    assert placed == [["files/0/serve.py"]]  # the recipe's file, copied in for the build
    assert run(engine, recipe)[0].up_to_date and fetched == ["demo"] and len(placed) == 1  # nothing copied
    run(engine, recipe, reuse=False)
    assert fetched == ["demo", "demo"] and len(placed) == 2


def test_a_changed_file_of_the_context_is_built_again(
    engine: FakeEngine, recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dockerfile names a recipe's files, not their bytes: an edited one (or a newer
    mlbuild helper) must not find the older image "up to date"."""
    (recipe.parent / "app").mkdir()
    (recipe.parent / "app" / "serve.py").write_text("print('v1')\n")
    recipe.write_text(RECIPE + "files:\n  - {src: app, dest: /srv/app}\n")
    first, _, _ = run(engine, recipe)
    assert run(engine, recipe)[0].up_to_date
    (recipe.parent / "app" / "serve.py").write_text("print('v2')\n")
    edited, _, _ = run(engine, recipe)
    assert not edited.up_to_date and edited.content_tag != first.content_tag and len(engine.builds) == 2
    monkeypatch.setattr(sys.modules["builder.render"], "probe_source", lambda: "# a newer probe\n")
    newer, _, _ = run(engine, recipe)
    assert not newer.up_to_date and newer.content_tag not in (first.content_tag, edited.content_tag)


def test_the_sites_build_settings_do_not_change_the_content_tag(engine: FakeEngine, recipe: Path) -> None:
    """Another CA bundle or index is how this site reaches packages, not what the image holds:
    a teammate behind another proxy finds the same image up to date."""
    results = []
    for site in ("one", "two"):
        ca = recipe.parent / f"{site}-ca.crt"
        ca.write_text(f"-----BEGIN CERTIFICATE-----\n{site}\n-----END CERTIFICATE-----\n")
        settings = BuildSettings(ca_bundle=ca, index_url=f"https://{site}.example/simple")
        results.append(build(recipe, engine=engine, settings=settings, options=BuildOptions()))
    assert results[1].up_to_date and results[1].content_tag == results[0].content_tag
    assert len(engine.builds) == 1


# -- publish ---------------------------------------------------------------------------------
@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(publish, "access_for", lambda host, *a, **k: fake.access(host))
    return fake


def test_push_publishes_every_tag_and_writes_the_record(recipe: Path, registry: FakeRegistry) -> None:
    engine = FakeEngine(registry)
    engine.add_image(BASE)
    result, said, stages = run(engine, recipe, push=True, extra_tags=("127.0.0.1:5000/team/demo:v1",))
    assert stages == ["resolving", "building", "smoke", "tagging", "pushing"]
    assert "pushing 127.0.0.1:5000/team/demo:v1" in said
    assert [(repo, tag) for repo, tag, _ in engine.pushed] == [
        ("mlbuild/demo", "sklearn1.5.2-py3.11-cpu"),
        ("mlbuild/demo", result.content_tag),
        ("127.0.0.1:5000/team/demo", "v1"),
    ]
    assert result.published is not None
    assert [p.repository for p in result.published.pushed] == ["mlbuild/demo", "127.0.0.1:5000/team/demo"]
    record = records.read_record(recipe)
    assert result.published.record == records.record_path(recipe)
    assert (record.repository, record.content_tag, record.image_id) == ("mlbuild/demo", result.content_tag,
                                                                         result.image_id)  # fmt: skip
    assert record.digest == registry.manifests[("mlbuild/demo", result.content_tag)].digest
    assert result.to_dict()["pushed"][0]["reference"] == f"mlbuild/demo@{record.digest}"


def test_an_up_to_date_image_is_smoke_tested_before_it_is_pushed(recipe: Path, registry: FakeRegistry) -> None:
    engine = FakeEngine(registry)
    engine.add_image(BASE)
    run(engine, recipe, run_smoke=False)  # tagged, never tested
    engine.probe = lambda spec: {**passing_probe(spec), "checks": [{"name": "x", "status": "failed", "detail": "no"}]}
    with pytest.raises(SmokeFailed, match="not pushed"):
        run(engine, recipe, push=True)
    assert engine.pushed == [] and not records.record_path(recipe).exists()
    engine.probe = passing_probe
    result, _, stages = run(engine, recipe, push=True, record=False)
    assert result.up_to_date and result.smoke is not None and result.smoke.passed
    assert stages == ["resolving", "tagging", "smoke", "pushing"]
    assert len(engine.pushed) == 2 and not records.record_path(recipe).exists()  # record=False


def test_the_smoke_step_on_another_engine(engine: FakeEngine, recipe: Path) -> None:
    other = FakeEngine()
    result = build(recipe, engine=engine, settings=BuildSettings(), smoke_engine=other)
    assert other.runs and not engine.runs  # tested there, not here
    assert other.image_id(result.image_id) == result.image_id and other.tags_of(result.image_id) == []
    assert engine.tags_of(result.image_id) != []


# -- the base --------------------------------------------------------------------------------
def spec() -> Any:
    _, resolved = load_and_resolve(Path(__file__).resolve().parents[2] / "recipes" / "sklearn-cpu.yaml")
    return resolved


def test_base_on_the_engine_is_used_as_it_is() -> None:
    engine = FakeEngine()
    image_id = engine.add_image(BASE)
    assert base.choose_base(engine, spec(), lambda _: None) == base.BaseChoice(BASE, image_id)


def test_missing_base_is_pulled() -> None:
    engine = FakeEngine()
    engine.pullable[BASE] = {}
    said: list[str] = []
    choice = base.choose_base(engine, spec(), said.append)
    assert choice.note == "pulled" and engine.image_id(BASE) == choice.image_id
    assert said == [f"base {BASE} is not on this engine; pulling it"]


def test_a_base_that_cannot_be_pulled_falls_back_to_a_bootstrapped_one(recipe: Path) -> None:
    engine = FakeEngine()
    engine.add_image("mlbuild/debian:bookworm", {BASE_SUITE_LABEL: "trixie"})  # another suite
    made = engine.add_image("mlbuild/debian:bookworm-made", {BASE_SUITE_LABEL: "bookworm"})
    engine.add_image(None, {BASE_SUITE_LABEL: "bookworm"})  # untagged: not a base to name
    engine.add_image("x/child:1", {BASE_SUITE_LABEL: "bookworm"}, layers=2)  # built on one
    choice = base.choose_base(engine, spec(), lambda _: None)
    assert (choice.ref, choice.image_id) == ("mlbuild/debian:bookworm-made", made)
    assert "cannot be pulled" in choice.note and "mlbuild base bootstrap" in choice.note
    result, said, _ = run(engine, recipe)
    assert result.base == choice and choice.note in said
    assert "\nFROM mlbuild/debian:bookworm-made AS builder\n" in engine.builds[0]


def test_no_base_at_all_says_how_to_make_one() -> None:
    with pytest.raises(EngineError, match="cannot be pulled") as info:
        base.choose_base(FakeEngine(), spec(), lambda _: None)
    assert "mlbuild base bootstrap --suite bookworm" in (info.value.hint or "")
    assert any("manifest unknown" in d for d in info.value.details)


# -- --gpu required on an image without a GPU build ---------------------------------------------
def test_required_gpu_on_a_cpu_recipe_fails_before_building(engine: FakeEngine, tmp_path: Path) -> None:
    path = tmp_path / "cpu.yaml"
    path.write_text(RECIPE.replace("smoke:\n", "smoke:\n  gpu: required\n"))
    with pytest.raises(SmokeFailed, match="this image has no GPU build") as info:
        run(engine, path)
    assert info.value.exit_code == 3
    assert engine.builds == [] and engine.runs == []  # refused before the build, nothing tested


def test_required_gpu_option_on_a_cpu_recipe_fails(engine: FakeEngine, recipe: Path) -> None:
    with pytest.raises(SmokeFailed, match="this image has no GPU build"):
        run(engine, recipe, gpu_mode="required")
    assert engine.builds == []
    result, _, _ = run(engine, recipe, gpu_mode="auto")  # auto keeps its meaning: not applicable
    assert result.smoke is not None and result.smoke.passed and result.smoke.gpu_status == "not-applicable"


def test_smoke_command_required_on_a_cpu_image_exits_3(
    engine: FakeEngine, recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from builder import engine as engine_mod
    from builder.cli import main

    result, _, _ = run(engine, recipe)
    runs = len(engine.runs)
    monkeypatch.setattr(engine_mod.Engine, "connect", classmethod(lambda cls, **kw: engine))
    done = CliRunner().invoke(main, ["smoke", result.tags[0], "--gpu", "required"])
    assert done.exit_code == 3, done.output
    assert "this image has no GPU build" in done.output
    assert len(engine.runs) == runs  # nothing ran: no GPU check can pass in a CPU image
    auto = CliRunner().invoke(main, ["smoke", result.tags[0]])
    assert auto.exit_code == 0 and "GPU: not-applicable" in auto.output


# -- a base image that carries its own Python ---------------------------------------------------
class PythonBase(FakeEngine):
    """Bases with Pythons at given paths (found by name on their PATH, like the engine does for
    an entrypoint) and a version; other names cannot start. Records the names tried."""

    def __init__(self, pythons: dict[str, tuple[str, str]], venv_pip: str = "ok") -> None:
        super().__init__()
        self.pythons = pythons  # name on PATH -> (sys.executable, version)
        self.venv_pip = venv_pip
        self.tried: list[str] = []

    def add_image(self, ref: str | None, labels: dict[str, str] | None = None, **kwargs: Any) -> str:
        """Its Pythons are its content: another set, another image ID (as on a real engine, where
        mlbuild remembers what an image ID carries)."""
        content = {"test.pythons": json.dumps([self.pythons, self.venv_pip], sort_keys=True)}
        return super().add_image(ref, {**content, **(labels or {})}, **kwargs)

    def run(self, image: str, command: list[str], **kwargs: Any) -> Any:
        entry = (kwargs.get("entrypoint") or [""])[0]
        if not entry:
            return super().run(image, command, **kwargs)
        self.tried.append(entry)
        if entry not in self.pythons:
            raise EngineError(f"cannot run {image}", details=[f'exec: "{entry}": executable file not found in $PATH'])
        exe, version = self.pythons[entry]
        doc = {"python": version, "python_bin": exe, "site_packages": [], "venv_pip": self.venv_pip,
               "error": "import sklearn: no module"}  # fmt: skip
        from builder.engine_api import RunResult

        return RunResult(0, json.dumps(doc) + "\n", "")


PY312_RECIPE = RECIPE.replace('python: "3.11"', 'python: "3.12"')
HOST_BASE = "mlbuild-device/py312-host:latest"


def test_a_base_override_builds_with_the_python_found_in_it(tmp_path: Path) -> None:
    """The device base (an imported Ubuntu: /usr/bin/python3.12, no python3 link, no shell)."""
    path = tmp_path / "py312.yaml"
    path.write_text(PY312_RECIPE)
    engine = PythonBase({"python3.12": ("/usr/bin/python3.12", "3.12.3")})
    engine.add_image(HOST_BASE)
    result, _, _ = run(engine, path, base_image=HOST_BASE)
    dockerfile = engine.builds[-1]
    assert '"/usr/bin/python3.12", "-m", "venv"' in dockerfile
    assert "/usr/local/bin/python3.12" not in dockerfile  # python:3.12-slim's path, not this base's
    assert result.spec.python_bin == "/usr/bin/python3.12"
    assert engine.tried == ["python3.12"]


def test_a_base_override_without_that_python_is_refused_before_building(tmp_path: Path) -> None:
    path = tmp_path / "py312.yaml"
    path.write_text(PY312_RECIPE)
    engine = PythonBase({"python3": ("/usr/bin/python3", "3.11.2")})
    engine.add_image(HOST_BASE)
    with pytest.raises(ResolveError, match=r"has Python 3\.11\.2 \(/usr/bin/python3\); the recipe asks for 3\.12"):
        run(engine, path, base_image=HOST_BASE)
    assert engine.tried == ["python3.12", "python3"] and engine.builds == []
    bare = PythonBase({})
    bare.add_image(HOST_BASE)
    with pytest.raises(ResolveError, match=r"has no python3\.12 or python3 on its PATH"):
        run(bare, path, base_image=HOST_BASE)


def test_the_default_base_is_not_observed(tmp_path: Path) -> None:
    path = tmp_path / "py312.yaml"
    path.write_text(PY312_RECIPE)
    engine = PythonBase({})
    engine.add_image("python:3.12-slim-bookworm")
    run(engine, path)
    assert engine.tried == [] and '"/usr/local/bin/python3.12", "-m", "venv"' in engine.builds[-1]


def test_a_python_without_venv_support_is_refused_before_building(tmp_path: Path) -> None:
    path = tmp_path / "py312.yaml"
    path.write_text(PY312_RECIPE)
    engine = PythonBase({"python3.12": ("/usr/bin/python3.12", "3.12.3")}, venv_pip="ensurepip is not available")
    engine.add_image(HOST_BASE)
    with pytest.raises(ResolveError, match="cannot make a virtual environment with pip") as info:
        run(engine, path, base_image=HOST_BASE)
    assert info.value.details == ["ensurepip is not available"] and "python3.12-venv" in (info.value.hint or "")
    assert engine.builds == []


def test_a_distro_python_found_in_a_named_base_is_used_else_installed(tmp_path: Path, recipe: Path) -> None:
    named = "team/debian-with-python:12"
    engine = PythonBase({"python3.11": ("/usr/bin/python3.11", "3.11.2")})
    engine.add_image(named)
    result, _, _ = run(engine, recipe, base_image=named)
    assert "apt-get install" not in engine.builds[-1] and result.spec.python_from == "image"
    assert '"/usr/bin/python3.11", "-m", "venv"' in engine.builds[-1]
    for bare in (PythonBase({}), PythonBase({"python3.11": ("/usr/bin/python3.11", "3.11.2")}, venv_pip="no")):
        bare.add_image(named)
        result, _, _ = run(bare, recipe, base_image=named)  # apt brings python3.11 (uv brings pip)
        assert "--no-install-recommends python3.11 ca-certificates" in bare.builds[-1]
        assert result.spec.python_from == "distro"
