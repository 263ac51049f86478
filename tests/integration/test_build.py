"""The walking skeleton on a real engine: build the example recipe from a bootstrapped Debian
base, smoke-test it, tag it; failing smoke leaves the image untagged; the CA bundle applies to
the build and is not in the image."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from imagescan import find_in_image, layer_members
from required_tools import tool

from builder.errors import BuildError, SmokeFailed
from builder.labels import SPEC_LABEL
from builder.pipeline import BuildOptions, build
from builder.settings import load_settings
from builder.spec import ResolvedSpec

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def mlbuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)  # fmt: skip


def test_example_builds_smokes_and_is_tagged(engine, sklearn_build) -> None:  # type: ignore[no-untyped-def]
    r = sklearn_build
    assert r.smoke is None or r.smoke.passed  # None: the content tag was already there
    assert r.tags[0] == "mlbuild/sklearn-cpu:sklearn1.5.2-py3.11-cpu"
    assert r.tags[1].startswith("mlbuild/sklearn-cpu:spec-") and r.tags[1].endswith(r.content_tag)
    for tag in r.tags:
        assert engine.image_id(tag) == r.image_id
    assert r.size_bytes > 100_000_000


def test_labels_carry_oci_annotations_and_the_spec(engine, sklearn_build) -> None:  # type: ignore[no-untyped-def]
    labels = engine.labels(sklearn_build.image_id)
    for key in ("created", "title", "version", "description", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.revision"]  # tests run in a git checkout
    spec = ResolvedSpec.from_labels(labels)
    assert spec is not None and spec.framework_version == "1.5.2" and spec.python == "3.11"
    assert spec.packages == ("scikit-learn==1.5.2", "pandas==2.2.3")
    assert labels["org.mlbuild.content"] == sklearn_build.content_tag


def test_image_runs_as_numeric_non_root_user_without_caches(engine, sklearn_build) -> None:  # type: ignore[no-untyped-def]
    attrs = engine.inspect(sklearn_build.image_id)
    assert attrs["Config"]["User"] == "10001"
    run = engine.run(
        sklearn_build.image_id,
        [
            "sh",
            "-c",
            # BuildKit's apt lists are a cache mount: the base's own empty partial/ stays
            "id -u; ls /var/lib/apt/lists | grep -vx partial | wc -l; ls /root/.cache 2>/dev/null | wc -l; "
            "test -e /tmp/mlbuild-build && echo BUILD-SETTINGS; command -v gcc || true",
        ],
    )
    lines = run.stdout.split()
    assert lines[:3] == ["10001", "0", "0"], run.stdout
    assert "BUILD-SETTINGS" not in run.stdout and "gcc" not in run.stdout


def test_smoke_command_and_inspect_read_the_labels(sklearn_build) -> None:  # type: ignore[no-untyped-def]
    done = mlbuild("smoke", sklearn_build.tags[0], "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    names = {c["name"]: c["status"] for c in doc["checks"]}
    assert names["framework.build"] == "passed" and names["compute.cpu"] == "passed"
    assert doc["gpu"]["status"] == "not-applicable"
    done = mlbuild("inspect", sklearn_build.tags[0], "--json")
    doc = json.loads(done.stdout)
    assert doc["spec"]["framework_version"] == "1.5.2"
    assert doc["smoke"]["passed"] is True and doc["smoke"]["image_id"] == sklearn_build.image_id


def test_failing_smoke_exits_3_and_leaves_the_image_untagged(engine, bookworm_base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = (ROOT / "recipes" / "sklearn-cpu.yaml").read_text()
    text = text.replace("name: sklearn-cpu", "name: sklearn-failing-smoke")
    text = text.replace(
        "    - python -c 'import pandas",
        "    - python -c 'import sys; sys.exit(4)'\n    - python -c 'import pandas",
    )
    recipe = tmp_path / "failing.yaml"
    recipe.write_text(text)
    with pytest.raises(SmokeFailed) as info:
        build(recipe, engine=engine, settings=load_settings(), options=BuildOptions(base_image=bookworm_base))
    assert info.value.exit_code == 3
    assert any("exit 4" in d for d in info.value.details)
    assert not [t for img in engine.client.images.list(name="mlbuild/sklearn-failing-smoke") for t in img.tags]
    done = mlbuild("build", str(recipe), "--base-image", bookworm_base)
    assert done.returncode == 3 and "smoke test failed" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def canary_ca(tmp_path_factory) -> tuple[Path, bytes]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run([tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mlbuild-canary-ca", "-keyout", str(folder / "k.pem"),
                    "-out", str(folder / "canary.pem")], check=True, capture_output=True)  # fmt: skip
    canary = (folder / "canary.pem").read_bytes()
    return folder, canary


def test_ca_bundle_applies_to_the_build_and_stays_out_of_the_image(engine, bookworm_base, canary_ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder, canary = canary_ca
    host = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = folder / "corp-bundle.pem"
    bundle.write_bytes(host.read_bytes() + canary)
    recipe = tmp_path / "ca.yaml"
    recipe.write_text("name: sklearn-ca\nframework: sklearn\nframework_version: '1.5'\npython: '3.11'\ncuda: cpu\n")
    result = build(
        recipe,
        engine=engine,
        settings=load_settings(ca_bundle=str(bundle)),
        options=BuildOptions(base_image=bookworm_base),
    )
    assert result.smoke is None or result.smoke.passed
    body = b"".join(canary.split(b"\n")[1:-2])  # the certificate's base64 body
    assert find_in_image(engine, result.image_id, [canary, body[:64]]) == []
    assert b"mlbuild-canary-ca" not in json.dumps(engine.labels(result.image_id)).encode()
    assert not [p for _, p, _ in layer_members(engine, result.image_id) if "mlbuild-build" in p]


def test_a_ca_bundle_without_the_right_roots_makes_pip_fail(engine, bookworm_base, canary_ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Proof that the bundle reaches the installer: trusting only the canary CA, the index is
    unreachable."""
    folder, _ = canary_ca
    recipe = tmp_path / "only-canary.yaml"
    recipe.write_text(
        "name: sklearn-ca-only\nframework: sklearn\nframework_version: '1.4'\npython: '3.11'\ncuda: cpu\n"
    )
    with pytest.raises(BuildError) as info:
        build(recipe, engine=engine, settings=load_settings(ca_bundle=str(folder / "canary.pem")),
              options=BuildOptions(base_image=bookworm_base))  # fmt: skip
    # the builder stage's install step fails, or, where this machine has not fetched uv yet, its
    # fetch on the host (builder.toolwheels), which uses the same bundle
    message = info.value.message
    assert ("pip" in message and "install" in message) or message.startswith("could not fetch uv"), message
    # uv's words for it (the installer); pip's where a site keeps pip
    untrusted = ("invalid peer certificate: UnknownIssuer", "CERTIFICATE_VERIFY_FAILED", "No matching distribution")
    assert any(u in d for d in info.value.details for u in untrusted), (info.value.message, info.value.details)


def test_every_example_recipe_resolves_and_renders() -> None:
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        done = mlbuild("render", str(recipe))
        assert done.returncode == 0 and done.stdout.startswith("# Rendered by mlbuild"), (
            recipe,
            done.stderr,
        )


FAKE_TORCH = ROOT / "tests" / "fixtures" / "fake_torch"


@pytest.fixture(scope="module")
def gpu_spec_image(engine, sklearn_build, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    """An image whose labels say PyTorch 2.5.1 cu124 (a numpy stand-in plays torch): how a
    CUDA image looks to the smoke test on a host without a GPU."""
    from builder.render import dockerfile_string
    from builder.resolve import load_and_resolve

    _, spec = load_and_resolve(ROOT / "recipes" / "pytorch-gpu.yaml")
    spec = spec.__class__.from_dict({**spec.to_dict(), "python": "3.11", "smoke_run": []})
    ctx = tmp_path_factory.mktemp("gpuimg")
    shutil.copytree(FAKE_TORCH / "torch", ctx / "torch")
    (ctx / "spec.json").write_text(spec.to_json())
    (ctx / "Dockerfile").write_text(
        f"FROM {sklearn_build.image_id}\n"
        "COPY torch/ /opt/venv/lib/python3.11/site-packages/torch/\n"
        "COPY spec.json /opt/mlbuild/spec.json\n"
        f"LABEL {dockerfile_string(SPEC_LABEL)}={dockerfile_string(spec.to_json())}\n"
    )
    image_id = engine.build(ctx)
    engine.tag(image_id, "mlbuild-test/fake-gpu", "latest")
    return "mlbuild-test/fake-gpu:latest"


def test_gpu_image_on_a_cpu_host_reports_gpu_not_run(gpu_spec_image) -> None:  # type: ignore[no-untyped-def]
    done = mlbuild("smoke", gpu_spec_image, "--gpu", "auto", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["gpu"]["status"] == "not-run" and "no /dev/nvidia" in doc["gpu"]["reason"]
    assert "passed" not in {c["status"] for c in doc["checks"] if c["name"].startswith("gpu")}


def test_gpu_required_on_a_cpu_host_exits_3(gpu_spec_image) -> None:  # type: ignore[no-untyped-def]
    done = mlbuild("smoke", gpu_spec_image, "--gpu", "required")
    assert done.returncode == 3 and "no NVIDIA GPU" in done.stderr and "Traceback" not in done.stderr


def test_doctor_runs(engine) -> None:  # type: ignore[no-untyped-def]
    done = mlbuild("doctor", "--json")
    doc = json.loads(done.stdout)
    assert done.returncode == 0, doc
    assert doc["findings"][0]["what"].startswith("Docker engine")


def test_a_base_that_runs_as_another_user_still_builds(engine, bookworm_base, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Images often end with a non-root USER (notebook images, images mlbuild made): each build
    stage runs as root (USER 0) all the same, and the image runs as its own user."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(f"FROM {bookworm_base}\nUSER 1000:1000\n")
    user_base = "mlbuild-test/debian:bookworm-user1000"
    engine.client.images.build(path=str(tmp_path / "base"), tag=user_base, rm=True)
    assert engine.inspect(user_base)["Config"]["User"] == "1000:1000"
    result = build(ROOT / "recipes" / "sklearn-cpu.yaml", engine=engine, settings=load_settings(),
                   options=BuildOptions(base_image=user_base, reuse=False))  # fmt: skip (built, not up to date)
    assert result.smoke is not None and result.smoke.passed
    assert engine.inspect(result.image_id)["Config"]["User"] == "10001"
