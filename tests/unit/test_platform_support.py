"""One recipe, several platforms: the data says which builds exist per platform, the resolver
picks per platform (one release and Python for all), refuses impossible pairs with the reason
and the nearest valid choices, and the spec of linux/amd64 stays as it was."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine

from builder import base, k8s
from builder.commands.many import github_matrix
from builder.errors import EngineError, RecipeError, RegistryError, ResolveError, UsageError
from builder.labels import BASE_SUITE_LABEL, CONTENT_LABEL, SPEC_LABEL
from builder.matrix import MatrixDataError, data_dir, load_matrix
from builder.pipeline import local_tags
from builder.platformdata import read_platforms
from builder.pull import pull_recorded
from builder.recipe import GpuFleet, Recipe, load_recipe, parse_recipe
from builder.records import ImageRecord, PlatformImage, read_record, record_path, write_record
from builder.registry import RegistryClient, RemoteManifest
from builder.resolve import resolve, resolve_platforms
from builder.settings import load_settings
from builder.smoke import emulation
from builder.variants import plan

ARM = "linux/arm64"
BOTH = ("linux/amd64", ARM)


def _recipe(framework: str, **kw: object) -> Recipe:
    return Recipe(name="t", framework=framework, **kw)  # type: ignore[arg-type]


GOOD = [
    # (framework, recipe fields, expected arm64 spec fields)
    ("sklearn", {"framework_version": "1.5", "python": "3.11", "cuda": "cpu"},
     {"framework_requirement": "scikit-learn==1.5.2", "platform": ARM}),
    # PyPI's own aarch64 torch is the CPU build up to 2.10.0: no index, no +cpu label
    ("pytorch", {"framework_version": "2.5", "cuda": "cpu"},
     {"framework_requirement": "torch==2.5.1", "index_url": None, "variant": "cpu"}),
    # from 2.11 PyPI's aarch64 wheel is the CUDA 13.0 build
    ("pytorch", {"framework_version": "2.11"}, {"variant": "cu130", "index_url": None, "cuda": "13.0"}),
    ("pytorch", {"framework_version": "2.5", "cuda": "12.4"},
     {"variant": "cu124", "index_url": "https://download.pytorch.org/whl/cu124", "archs": ()}),
    ("tensorflow", {}, {"framework_requirement": "tensorflow==2.21.0", "cuda": "cpu"}),
    ("jax", {"framework_version": "0.4.30", "cuda": "12.4"}, {"variant": "cuda12"}),
]  # fmt: skip


@pytest.mark.parametrize(("framework", "fields", "expected"), GOOD)
def test_arm64_picks(framework: str, fields: dict[str, object], expected: dict[str, object]) -> None:
    spec = resolve(_recipe(framework, platforms=(ARM,), **fields))
    for key, value in expected.items():
        assert getattr(spec, key) == value, key
    assert any("linux/arm64" in r for r in spec.reasons)


REFUSED = [
    # (framework, recipe fields, words in the message, words in the hint)
    ("tensorflow", {"cuda": "12.5"}, ["on linux/arm64", "no CUDA builds (CPU only)"], ["linux/arm64"]),
    ("pytorch", {"cuda": "12.1"}, ["on linux/arm64", "offers CUDA 12.4"], ['cuda: "12.4"']),
    ("pytorch", {"framework_version": "2.6", "cuda": "12.4"}, ["2.6.* offers CUDA 12.6"],
     ['cuda: "12.6"', 'framework_version: "2.5"']),
    ("pytorch", {"framework_version": "2.12", "cuda": "cpu"}, ["has no CPU build"], ['framework_version: "2.10"']),
    ("jax", {"framework_version": "0.4.25", "cuda": "12.4"}, ["no CUDA builds"], ["offer CUDA 12.4"]),
    ("tensorflow", {"framework_version": "2.14"}, ["no tensorflow release matches"], ['framework_version: "2.21"']),
    ("pytorch", {"cuda": "12.4", "variant": "cuda-runtime"}, ["NVIDIA CUDA base image for linux/arm64"],
     ["variant: runtime"]),
]  # fmt: skip


@pytest.mark.parametrize(("framework", "fields", "message", "hint"), REFUSED)
def test_arm64_refusals_name_the_reason_and_nearest_choices(
    framework: str, fields: dict[str, object], message: list[str], hint: list[str]
) -> None:
    with pytest.raises(ResolveError) as exc:
        resolve(_recipe(framework, platforms=(ARM,), **fields))
    for words in message:
        assert words in exc.value.message
    for words in hint:
        assert words in (exc.value.hint or "")
    assert any("aarch64" in d for d in exc.value.details), "the platform's note explains what exists"


def test_gpu_archs_are_not_promised_on_arm64() -> None:
    recipe = Recipe(name="t", framework="pytorch", platforms=(ARM,), cuda="12.4", gpu=GpuFleet(archs=("sm_80",)))
    with pytest.raises(ResolveError, match="does not record which GPU architectures"):
        resolve(recipe)


def test_both_platforms_share_the_newest_release_they_all_have() -> None:
    amd, arm = resolve_platforms(_recipe("pytorch", platforms=BOTH, cuda="cpu"))
    assert amd.framework_version == arm.framework_version == "2.10.0"  # arm64 CPU ends at 2.10.0
    assert (amd.platform, arm.platform) == BOTH
    assert amd.framework_requirement == "torch==2.10.0+cpu" and arm.framework_requirement == "torch==2.10.0"
    assert amd.python == arm.python
    assert any("newest that all of linux/amd64, linux/arm64 have" in r for r in arm.reasons)
    assert amd.digest() != arm.digest()  # one content tag per platform


def test_amd64_spec_has_no_platform_key_so_content_tags_stay() -> None:
    spec = resolve(_recipe("sklearn", framework_version="1.5", python="3.11", cuda="cpu"))
    assert "platform" not in spec.to_dict()
    arm = resolve(_recipe("sklearn", framework_version="1.5", python="3.11", cuda="cpu", platforms=(ARM,)))
    assert arm.to_dict()["platform"] == ARM


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("platforms: [linux/s390x]", "platforms[0]: 'linux/s390x' is not one of: linux/amd64 | linux/arm64"),
        ("platforms: [linux/arm64, linux/arm64]", "platforms[1]: 'linux/arm64' is listed twice"),
        ("platforms: []", "platforms: is empty"),
        ("platforms: linux/arm64", "platforms: expected a list"),
    ],
)
def test_recipe_platforms_are_checked(text: str, words: str) -> None:
    doc = f"name: t\nframework: sklearn\n{text}\n".encode()
    with pytest.raises(RecipeError) as exc:
        parse_recipe(doc, Path("r.yaml"))
    assert words in str([str(p) for p in exc.value.problems])


def test_recipe_platforms_are_read() -> None:
    recipe = parse_recipe(b"name: t\nframework: sklearn\nplatforms: [linux/amd64, linux/arm64]\n", Path("r.yaml"))
    assert recipe.platforms == BOTH
    assert parse_recipe(b"name: t\nframework: sklearn\n", Path("r.yaml")).platforms == ("linux/amd64",)


def test_platform_block_problems_name_field_value_and_allowed() -> None:
    problems: list[str] = []
    read_platforms(
        {"platforms": {"linux/s390x": {}, ARM: {"variants": {"cpu": ["~~bad"]}, "requirements": {"cpu": "x"}}}},
        problems,
    )
    assert any("platforms.linux/s390x: not a platform" in p for p in problems)
    assert any("platforms.linux/arm64.variants.cpu: '~~bad' is not a PEP 440 specifier set" in p for p in problems)
    assert any("platforms.linux/arm64.requirements.cpu: 'x' lacks {version}" in p for p in problems)


def test_shipped_platform_data_is_consistent_and_sourced() -> None:
    m = load_matrix()  # check_matrix ran on it
    for fw in m.frameworks.values():
        builds = fw.builds_for(ARM)
        assert builds is not None, f"{fw.framework}: say which builds exist for {ARM}"
        assert builds.sources and all({"what", "where", "checked"} <= set(s) for s in builds.sources)
        assert builds.note


def test_a_default_build_without_wheels_is_refused_as_bad_data(tmp_path: Path) -> None:
    src = data_dir()
    for f in src.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    torch = tmp_path / "pytorch.yaml"
    torch.write_text(torch.read_text().replace('      cpu: ["<=2.10.0"]\n', ""))
    with pytest.raises(MatrixDataError, match="default_variant cpu has no wheels there"):
        load_matrix(str(tmp_path))


# ---- base, build, smoke, k8s, matrix-plan, records (fakes) ------------------------------------


def _arm_spec() -> Any:
    return resolve(_recipe("sklearn", framework_version="1.5", python="3.11", cuda="cpu", platforms=(ARM,)))


def test_base_of_another_platform_is_not_used_and_a_bootstrapped_one_of_ours_is() -> None:
    engine = FakeEngine()
    engine.add_image("debian:bookworm-slim")  # amd64, under the name the spec asks for
    engine.add_image("mlbuild/debian:bookworm", {BASE_SUITE_LABEL: "bookworm"})  # amd64
    made = engine.add_image("mlbuild/debian:bookworm-arm64", {BASE_SUITE_LABEL: "bookworm"})
    engine.images[made]["Architecture"] = "arm64"
    said: list[str] = []
    choice = base.choose_base(engine, _arm_spec(), said.append)
    assert (choice.ref, choice.image_id) == ("mlbuild/debian:bookworm-arm64", made)
    assert "bookworm arm64 base made by `mlbuild base bootstrap`" in choice.note
    assert said[0] == "base debian:bookworm-slim on this engine is amd64, not arm64"


def test_no_arm64_base_says_how_to_bootstrap_one() -> None:
    engine = FakeEngine()
    engine.add_image("mlbuild/debian:bookworm", {BASE_SUITE_LABEL: "bookworm"})  # amd64 only
    with pytest.raises(EngineError) as info:
        base.choose_base(engine, _arm_spec(), lambda _: None)
    assert "mlbuild base bootstrap --suite bookworm --arch arm64" in (info.value.hint or "")


def test_emulation_is_named_for_another_architecture_only() -> None:
    engine = FakeEngine()
    engine.version = lambda: {"Arch": "amd64"}  # type: ignore[method-assign]
    assert emulation(engine, _arm_spec()) == "under emulation: linux/arm64 on a amd64 engine (QEMU), CPU checks only"
    amd = resolve(_recipe("sklearn", framework_version="1.5", python="3.11", cuda="cpu"))
    assert emulation(engine, amd) == ""


def test_check_emulation_says_how_to_set_up_the_host(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot run linux aarch64 programs") as info:
        base.check_emulation("aarch64", str(tmp_path))
    assert "scripts/setup-host.sh" in (info.value.hint or "")
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n")
    base.check_emulation("aarch64", str(tmp_path))
    with pytest.raises(UsageError, match="not an architecture"):
        base.platform_of_arch("s390x")


def test_local_tags_of_arm64_images_carry_the_architecture() -> None:
    spec = dataclasses.replace(_arm_spec(), tags=("v1",))
    assert local_tags(spec) == (f"{spec.readable_tag}-arm64", "v1-arm64")


def test_k8s_affinity_admits_the_architectures_of_the_image() -> None:
    arm = _arm_spec()
    expr = k8s.manifest(arm, "r@sha256:" + "0" * 64)["spec"]["template"]["spec"]["affinity"]
    terms = expr["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}]
    amd = resolve(_recipe("sklearn", framework_version="1.5", python="3.11", cuda="cpu"))
    both = k8s.node_affinity(amd, BOTH)
    assert both is not None and "amd64" in str(both) and "arm64" in str(both)
    assert k8s.node_affinity(amd) is None  # an amd64-only CPU image: as before
    gpu = resolve(_recipe("pytorch", framework_version="2.11", platforms=(ARM,)))
    gpu_terms = str(k8s.node_affinity(gpu))
    assert "kubernetes.io/arch" in gpu_terms and "nvidia.com/cuda.driver.major" in gpu_terms


def test_matrix_plan_has_one_job_per_platform(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nframework: pytorch\ncuda: cpu\nplatforms: [linux/amd64, linux/arm64]\n")
    planned = plan([path])
    assert planned[0].spec is not None and planned[0].spec.framework_version == "2.10.0"  # agreed
    jobs = github_matrix(planned, "cpu-runner", "gpu-runner")["include"]
    assert [j["platform"] for j in jobs] == list(BOTH)
    assert {j["framework"] for j in jobs} == {"pytorch 2.10.0"}


def test_record_of_an_index_reads_back_per_platform(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    entries = (PlatformImage("linux/amd64", "sha256:a", "spec-a", "sha256:ia", "da"),
               PlatformImage(ARM, "sha256:b", "spec-b", "sha256:ib", "db"))  # fmt: skip
    rec = ImageRecord("reg/t", "sha256:index", ("x",), "spec-a", "sha256:ia", "linux/amd64", {}, "da",
                      platforms=entries)  # fmt: skip
    write_record(record_path(recipe), rec)
    back = read_record(recipe)
    assert back == rec
    arm = back.for_platform(ARM)
    assert (arm.content_tag, arm.image_id, arm.reference) == ("spec-b", "sha256:ib", "reg/t@sha256:index")
    with pytest.raises(RegistryError, match="no image for linux/s390x"):
        back.for_platform("linux/s390x")


def test_index_document_names_each_platform_by_digest_and_size() -> None:
    sent: list[tuple[str, str, dict[str, str], bytes | None]] = []

    class Session:
        trust_env = True

        def request(self, method: str, url: str, *, headers: dict[str, str], data: bytes | None = None,
                    **_: Any) -> Any:  # fmt: skip
            sent.append((method, url, headers, data))
            return type("R", (), {"status_code": 201, "text": "", "headers": {}})()

    client = RegistryClient("127.0.0.1:5000", session=Session())
    docker_v2 = "application/vnd.docker.distribution.manifest.v2+json"
    children = [("linux/amd64", RemoteManifest("sha256:a", docker_v2, "sha256:ca", size=10)),
                (ARM, RemoteManifest("sha256:b", docker_v2, "sha256:cb", size=11))]  # fmt: skip
    digest = client.put_index("team/x", "v1", children, lambda _: None)
    method, url, headers, body = sent[0]
    assert (method, url) == ("PUT", "http://127.0.0.1:5000/v2/team/x/manifests/v1")
    assert headers["Content-Type"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert body is not None and digest == "sha256:" + hashlib.sha256(body).hexdigest()
    doc = json.loads(body)
    assert [(m["digest"], m["size"], m["platform"]["architecture"]) for m in doc["manifests"]] == [
        ("sha256:a", 10, "amd64"), ("sha256:b", 11, "arm64"),
    ]  # fmt: skip


def test_site_config_names_a_native_engine_per_platform(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("engines:\n  linux/arm64: ssh://ci@arm-builder\n")
    settings = load_settings(env={}, config_path=str(config))
    assert settings.engine_for(ARM) == "ssh://ci@arm-builder" and settings.engine_for("linux/amd64") is None
    for bad, words in [("engines:\n  linux/s390x: tcp://h:2376\n", "'linux/s390x' is not one of"),
                       ("engines:\n  linux/arm64: 'tcp://h; rm -rf /'\n", "is not an engine URL")]:  # fmt: skip
        config.write_text(bad)
        with pytest.raises(UsageError, match=words):
            load_settings(env={}, config_path=str(config))


# ---- mlbuild pull of a multi-platform record (fakes) ------------------------------------------


def _pushed_both(tmp_path: Path) -> tuple[Path, FakeEngine, dict[str, str]]:
    """A two-platform recipe, its record (index + one entry per platform), and a fake engine
    that can pull each platform's image by its own manifest digest only."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\nframework: sklearn\nframework_version: '1.5'\npython: '3.11'\ncuda: cpu\n"
                      f"platforms: [linux/amd64, {ARM}]\n")  # fmt: skip
    engine = FakeEngine()
    engine.version = lambda: {"Os": "linux", "Arch": "amd64"}  # type: ignore[method-assign]
    entries, ids, served = [], {}, {}
    for n, spec in enumerate(resolve_platforms(load_recipe(recipe))):
        labels = {SPEC_LABEL: spec.to_json(), CONTENT_LABEL: f"spec-{n}"}
        image_id = engine.add_image(None, labels)
        engine.images[image_id]["Architecture"] = spec.platform.split("/")[1]
        digest = "sha256:" + f"{n}" * 64
        served[f"reg.example/t@{digest}"] = image_id
        ids[spec.platform] = image_id
        entries.append(PlatformImage(spec.platform, digest, f"spec-{n}", image_id, spec.digest()))
    rec = ImageRecord("reg.example/t", "sha256:" + "f" * 64, ("v1",), "spec-0", ids["linux/amd64"], "linux/amd64",
                      {}, entries[0].spec_digest, platforms=tuple(entries))  # fmt: skip
    write_record(record_path(recipe), rec)
    engine.pulled = []  # type: ignore[attr-defined]

    def pull_ref(ref: str, **_: Any) -> str:  # by a platform's own manifest digest only, as recorded
        engine.pulled.append(ref)  # type: ignore[attr-defined]
        if ref not in served:
            raise RegistryError(f"cannot pull {ref}", details=["manifest unknown"])
        return served[ref]

    engine.pull_ref = pull_ref  # type: ignore[method-assign]
    return recipe, engine, ids


def test_pull_of_a_multi_platform_record_takes_the_engines_platform_by_its_own_digest(tmp_path: Path) -> None:
    recipe, engine, ids = _pushed_both(tmp_path)
    said: list[str] = []
    pulled = pull_recorded(engine, recipe, say=said.append)
    assert pulled.image_id == ids["linux/amd64"] and pulled.record.platform == "linux/amd64"
    assert pulled.record.platform_reference == "reg.example/t@sha256:" + "0" * 64
    assert pulled.record.reference == "reg.example/t@sha256:" + "f" * 64  # the record still names the index
    assert engine.pulled == ["reg.example/t@sha256:" + "0" * 64]  # type: ignore[attr-defined]
    assert "for linux/amd64 (reg.example/t@sha256:000" in said[0]
    assert engine.tags_of(ids["linux/amd64"]) == ["reg.example/t:v1"]


def test_pull_platform_picks_another_platforms_image_and_checks_it(tmp_path: Path) -> None:
    recipe, engine, ids = _pushed_both(tmp_path)
    pulled = pull_recorded(engine, recipe, platform=ARM)
    assert engine.pulled == ["reg.example/t@sha256:" + "1" * 64]  # type: ignore[attr-defined]
    assert (pulled.image_id, pulled.record.content_tag, pulled.spec.platform) == (ids[ARM], "spec-1", ARM)
    # the registry gave another image for that digest: refused, nothing tagged
    engine.pull_ref = lambda ref, **_: ids["linux/amd64"]  # type: ignore[method-assign]
    for image_id in ids.values():
        for tag in engine.tags_of(image_id):
            engine.refs.pop(tag)
    with pytest.raises(RegistryError, match="does not match") as info:
        pull_recorded(engine, recipe, platform=ARM)
    assert any("the record says" in p for p in info.value.details)
    assert any(f"the image is for linux/amd64, the record's entry for {ARM}" in p for p in info.value.details)
    assert engine.tags_of(ids["linux/amd64"]) == []


def test_pull_platform_the_record_lacks_is_a_clear_error(tmp_path: Path) -> None:
    recipe, engine, _ = _pushed_both(tmp_path)
    with pytest.raises(RegistryError, match="the record names no image for linux/s390x") as info:
        pull_recorded(engine, recipe, platform="linux/s390x")
    assert info.value.details == [f"it has: linux/amd64, {ARM}"] and "--platform" in (info.value.hint or "")
    engine.version = lambda: {"Os": "linux", "Arch": "ppc64le"}  # type: ignore[method-assign]
    with pytest.raises(RegistryError, match="no image for linux/ppc64le"):
        pull_recorded(engine, recipe)  # an engine of a platform the record lacks


def test_pull_platform_of_a_single_platform_record_must_be_its_own(tmp_path: Path) -> None:
    recipe, engine, _ = _pushed_both(tmp_path)
    rec = read_record(recipe)
    write_record(record_path(recipe), dataclasses.replace(rec, platforms=()))
    with pytest.raises(UsageError, match=f"--platform {ARM}: the record of .* names one image, for linux/amd64"):
        pull_recorded(engine, recipe, platform=ARM)


def test_an_up_to_date_image_of_another_architecture_is_smoke_tested_emulated_before_a_push() -> None:
    from builder.publish import require_smoke

    engine = FakeEngine()
    engine.version = lambda: {"Arch": "amd64"}  # type: ignore[method-assign]
    spec = _arm_spec()
    image = engine.add_image("mlbuild/demo:x-arm64", {SPEC_LABEL: spec.to_json(), CONTENT_LABEL: "spec-1"})
    said: list[str] = []
    report = require_smoke(engine, image, gpu_mode="auto", say=said.append)
    assert report.passed
    assert said[1] == "smoke test under emulation: linux/arm64 on a amd64 engine (QEMU), CPU checks only"


def test_verify_rebuilds_the_platform_of_the_image_it_compares_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import types

    from builder import verify as verify_mod

    engine = FakeEngine()
    spec = _arm_spec()
    image = engine.add_image("mlbuild/demo:x-arm64", {SPEC_LABEL: spec.to_json(), CONTENT_LABEL: "spec-1"})
    asked: list[str | None] = []
    lock = types.SimpleNamespace(for_platform=lambda p: asked.append(p) or lock, digest=lambda: "sha256:1")
    monkeypatch.setattr(verify_mod, "read_lock", lambda _path: lock)
    built: list[Any] = []

    def fake_build(_recipe: Path, **kw: Any) -> Any:
        built.append(kw["options"])
        return types.SimpleNamespace(image_id=image)

    monkeypatch.setattr(verify_mod, "build", fake_build)
    said: list[str] = []
    done = verify_mod.verify(engine, tmp_path / "r.yaml", settings=load_settings(), reference=image, say=said.append)
    assert asked == [ARM] and built[0].platform == ARM and built[0].locked and built[0].nocache
    assert done.identical and said[0].endswith(f", for {ARM}")
    asked.clear()
    verify_mod.verify(engine, tmp_path / "r.yaml", settings=load_settings(), reference=image, platform="linux/amd64")
    assert asked == ["linux/amd64"]  # asked for: that platform's entry of the lock


def test_build_takes_platforms_comma_separated_as_docker_does_or_repeated() -> None:
    from builder.cli import build as build_cmd

    def parsed(*args: str) -> tuple[str, ...]:
        ctx = build_cmd.make_context("build", ["recipe.yaml", *args])
        return tuple(ctx.params["platforms"])

    assert parsed("--platform", "linux/amd64,linux/arm64") == ("linux/amd64", ARM)
    assert parsed("--platform", "linux/amd64", "--platform", ARM, "--platform", ARM) == ("linux/amd64", ARM)
    assert parsed() == ()
