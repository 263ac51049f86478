"""builder.buildkit: which docker CLI drives BuildKit (fake CLI outputs), the CLI's arguments,
the plain progress it prints (failure reports), the BuildKit-only Dockerfile variant, and the
pipeline's choice of builder on the in-memory engine."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from fakes import FakeEngine
from required_tools import tool

from builder import buildkit
from builder.doctor import builder_finding
from builder.engine_api import BuilderProbe, BuildKitRun
from builder.errors import BuildError, UsageError
from builder.labels import BUILDER_LABEL
from builder.pipeline import BuildOptions, build
from builder.render import PIP_CONF_SECRET, UV_TOML_SECRET, render, write_context
from builder.resolve import load_and_resolve
from builder.settings import BuildSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "recipes" / "sklearn-cpu.yaml"
BASE = "mlbuild-test/debian:bookworm"

# What the CLIs of this project's machines answer (trimmed).
DEBIAN_HELP = "Usage:  docker build [OPTIONS] PATH | URL | -\n  --progress string\n  --secret stringArray\n"
NEW_CLI_REFUSES = (
    "ERROR: BuildKit is enabled but the buildx component is missing or broken.\n"
    "       Install the buildx component to build images with BuildKit:\n"
)
NO_BUILDX = "docker: 'buildx' is not a docker command.\nSee 'docker --help'\n"
BUILDX = "github.com/docker/buildx v0.17.1 257815a\n"


def fake_runner(answers: dict[tuple[str, ...], tuple[int, str]]) -> buildkit.Runner:
    asked: list[tuple[list[str], dict[str, str]]] = []

    def run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
        asked.append((argv, env))
        return answers.get(tuple(argv), (1, "unknown"))

    run.asked = asked  # type: ignore[attr-defined]
    return run


def test_a_cli_with_buildx_builds_with_buildx_on_the_engines_own_builder() -> None:
    run = fake_runner({("/x/docker", "buildx", "version"): (0, BUILDX)})
    probe = buildkit.probe_clis(["/x/docker"], run)
    assert probe.cli == "/x/docker"
    assert probe.argv == ("/x/docker", "buildx", "build", "--builder", "default", "--load")
    assert "buildx v0.17.1" in probe.reason


def test_debians_cli_drives_buildkit_with_the_environment_variable() -> None:
    run = fake_runner({
        ("/usr/bin/docker", "buildx", "version"): (1, NO_BUILDX),
        ("/usr/bin/docker", "build", "--help"): (0, DEBIAN_HELP),
    })  # fmt: skip
    probe = buildkit.probe_clis(["/usr/bin/docker"], run)
    assert (probe.cli, probe.argv, probe.env) == ("/usr/bin/docker", ("/usr/bin/docker", "build"),
                                                  (("DOCKER_BUILDKIT", "1"),))  # fmt: skip
    assert run.asked[1] == (["/usr/bin/docker", "build", "--help"], {"DOCKER_BUILDKIT": "1"})  # type: ignore[attr-defined]


def test_a_newer_cli_without_buildx_is_refused_and_the_next_one_on_path_is_probed() -> None:
    run = fake_runner({
        ("/usr/local/bin/docker", "buildx", "version"): (1, NO_BUILDX),
        ("/usr/local/bin/docker", "build", "--help"): (1, NEW_CLI_REFUSES),
        ("/usr/bin/docker", "buildx", "version"): (1, NO_BUILDX),
        ("/usr/bin/docker", "build", "--help"): (0, DEBIAN_HELP),
    })  # fmt: skip
    assert buildkit.probe_clis(["/usr/local/bin/docker", "/usr/bin/docker"], run).cli == "/usr/bin/docker"
    alone = buildkit.probe_clis(["/usr/local/bin/docker"], run)
    assert alone.cli is None and alone.argv == ()
    assert "buildx component is missing" in alone.reason and "/usr/local/bin/docker" in alone.reason


def test_a_help_text_without_secrets_is_not_taken_for_buildkit() -> None:
    run = fake_runner({("/old/docker", "build", "--help"): (0, "Usage:  docker build [OPTIONS] PATH\n")})
    assert buildkit.probe_clis(["/old/docker"], run).cli is None
    assert "no docker CLI" in buildkit.probe_clis([], run).reason


def test_clis_are_found_on_path_in_order_each_file_once(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "docker").write_text("#!/bin/sh\n")
        (folder / "docker").chmod(0o755)
    (tmp_path / "c").symlink_to(first)
    path = os.pathsep.join([str(second), str(tmp_path / "c"), str(first), str(tmp_path / "none")])
    assert buildkit.docker_clis(path) == [str(second / "docker"), str(tmp_path / "c" / "docker")]


def test_choose_auto_buildkit_classic() -> None:
    found = BuilderProbe(cli="/usr/bin/docker", argv=("/usr/bin/docker", "build"), reason="it can")
    none = BuilderProbe(reason="no CLI can")
    assert buildkit.choose("auto", found).buildkit and buildkit.choose("auto", found).reason == "auto: it can"
    assert buildkit.choose("auto", none).builder == "classic" and "no CLI can" in buildkit.choose("auto", none).reason
    assert buildkit.choose("classic", found).builder == "classic"
    with pytest.raises(UsageError, match="no docker CLI here can drive BuildKit") as err:
        buildkit.choose("buildkit", none)
    assert err.value.details == ["no CLI can"]
    with pytest.raises(UsageError, match="'kit' is not one of auto, buildkit, classic"):
        buildkit.choose("kit", found)


@pytest.mark.parametrize(
    ("version", "why"),
    [({"Version": "20.10.24+dfsg1", "Os": "linux"}, ""), ({"Version": "18.06.1-ce", "Os": "linux"}, "older"),
     ({"Version": "24.0.7", "Os": "windows"}, "windows")],
)  # fmt: skip
def test_the_engine_must_be_able_to_run_buildkit(version: dict[str, object], why: str) -> None:
    assert (why in buildkit.engine_supports(version)) and (bool(why) == bool(buildkit.engine_supports(version)))


PLAIN_FAILURE = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#7 [builder 4/6] RUN ["/opt/venv/bin/pip", "install", "-r", "/tmp/mlbuild/requirements.txt"]
#8 [stage-1 2/5] RUN apt-get update
#9 [builder 3/6] RUN ["/opt/venv/bin/pip", "install", "-r", "/tmp/mlbuild/requirements-framework.txt"]
#9 4.100 ERROR: pip's dependency resolver does not currently take into account all the packages
#9 DONE 5.0s
#7 1.204 Looking in indexes: http://***@127.0.0.1:9/simple
#8 1.300 Get:1 http://deb.example bookworm InRelease
#7 2.511 ERROR: No matching distribution found for nosuchpkg==1
#7 ERROR: executor failed running [/opt/venv/bin/pip install -r /tmp/mlbuild/requirements.txt]: exit code: 1
#8 CANCELED
------
 > [builder 4/6] RUN ["/opt/venv/bin/pip", ...]:
------
error: failed to solve: executor failed running [/opt/venv/bin/pip install]: exit code: 1
"""


def test_a_failure_names_the_failing_step_and_its_own_last_lines() -> None:
    log = buildkit.PlainLog()
    for line in PLAIN_FAILURE.splitlines():
        log.add(line)
    err = log.error(1)
    assert err.message == 'build failed at [builder 4/6] RUN ["/opt/venv/bin/pip", "install", "-r", ' \
        '"/tmp/mlbuild/requirements.txt"]'  # fmt: skip
    assert "ERROR: No matching distribution found for nosuchpkg==1" in err.details
    assert not any("bookworm InRelease" in d for d in err.details)  # the other stage's lines stay out
    assert err.details[-1].startswith("error: failed to solve")
    assert buildkit.step_line("#7 [builder 4/6] RUN x") and not buildkit.step_line("#1 [internal] load build")
    plain = buildkit.PlainLog()
    plain.add("unexpected text")
    assert plain.error(2).message == "the BuildKit build failed (exit 2)"


def test_the_cli_arguments_carry_values_as_single_arguments(tmp_path: Path) -> None:
    kit = BuildKitRun(argv=("/usr/bin/docker", "build"), secrets=((PIP_CONF_SECRET, "/s/pip.conf"),),
                      cache_from=("reg:5000/x:1",))  # fmt: skip
    argv = buildkit.build_args(kit, tmp_path, tmp_path / "iid", labels={"a": "x y; $(id)"},
                               buildargs={"http_proxy": "http://p:3128"}, nocache=True, network="host")  # fmt: skip
    assert argv[:4] == ["/usr/bin/docker", "build", "--progress=plain", "--iidfile"]
    assert argv[argv.index("--label") : argv.index("--label") + 2] == ["--label", "a=x y; $(id)"]
    pairs = {(argv[i], argv[i + 1]) for i in range(len(argv) - 1)}
    assert {("--build-arg", "BUILDKIT_INLINE_CACHE=1"), ("--cache-from", "reg:5000/x:1"),
            ("--secret", f"id={PIP_CONF_SECRET},src=/s/pip.conf"), ("--network", "host")} <= pairs  # fmt: skip
    assert "--no-cache" in argv and argv[-1] == str(tmp_path)
    plain = buildkit.build_args(BuildKitRun(argv=("d", "build"), inline_cache=False), tmp_path, tmp_path / "i",
                                labels={}, buildargs={}, nocache=False, network=None)  # fmt: skip
    assert "BUILDKIT_INLINE_CACHE=1" not in plain and "--no-cache" not in plain


def fake_cli(tmp_path: Path, body: str) -> str:
    cli = tmp_path / "docker"
    cli.write_text("#!/bin/sh\n" + body)
    cli.chmod(cli.stat().st_mode | stat.S_IEXEC)
    return str(cli)


def test_a_build_streams_its_lines_and_returns_the_iidfiles_image(tmp_path: Path) -> None:
    cli = fake_cli(tmp_path, 'while [ "$1" != --iidfile ]; do shift; done\n'
                   'echo "#5 [builder 1/2] RUN x"\necho "#5 0.1 fetched http://u:tok@h/simple"\n'
                   'printf sha256:%064d 7 > "$2"\n')  # fmt: skip
    lines: list[str] = []
    image = buildkit.build_with_cli(BuildKitRun(argv=(cli, "build")), tmp_path, on_line=lines.append)
    assert image == "sha256:" + "0" * 63 + "7"
    assert lines == ["#5 [builder 1/2] RUN x", "#5 0.1 fetched http://***@h/simple"]  # credentials hidden


def test_a_failed_build_raises_a_build_error_with_the_step(tmp_path: Path) -> None:
    cli = fake_cli(tmp_path, "cat <<'EOF'\n" + PLAIN_FAILURE + "EOF\nexit 1\n")
    with pytest.raises(BuildError, match=r"build failed at \[builder 4/6\]"):
        buildkit.build_with_cli(BuildKitRun(argv=(cli, "build")), tmp_path)
    silent = fake_cli(tmp_path, "exit 0\n")
    with pytest.raises(BuildError, match="ended without an image"):
        buildkit.build_with_cli(BuildKitRun(argv=(silent, "build")), tmp_path)


# -- the Dockerfile's BuildKit variant --------------------------------------------------------------


def test_the_buildkit_variant_mounts_caches_and_the_secret_and_the_classic_one_has_no_buildkit_syntax() -> None:
    _, spec = load_and_resolve(EXAMPLE, "mlbuild-test/debian:bookworm")
    classic, kit = render(spec), render(spec, buildkit=True)
    assert "--mount" not in classic and "PIP_NO_CACHE_DIR=1" in classic
    assert "# syntax" not in kit.lower() and "PIP_NO_CACHE_DIR" not in kit
    runs = [line for line in kit.splitlines() if line.startswith("RUN ")]
    # uv installing the venv's pip, then uv's framework and packages steps
    python_runs = [line for line in runs if "/opt/venv/bin/pip" in line or '/uv", "pip"' in line]
    apt_runs = [line for line in runs if "apt-get" in line]
    assert len(python_runs) == 3 and len(apt_runs) == 2
    secrets = (f"--mount=type=secret,id={PIP_CONF_SECRET},target=/tmp/mlbuild-build/pip.conf",
               f"--mount=type=secret,id={UV_TOML_SECRET},target=/tmp/mlbuild-build/uv.toml")  # fmt: skip
    assert all(all(s in line for s in secrets) and "target=/root/.cache,sharing=locked" in line
               for line in python_runs)  # fmt: skip
    assert "UV_CACHE_DIR=/root/.cache/uv" in kit and "UV_NO_CACHE" not in kit  # uv keeps its cache in the mount
    assert all("target=/var/lib/apt/lists,sharing=locked" in line and "/var/lib/apt/lists/*" not in line
               for line in apt_runs)  # fmt: skip
    # one apt step of both stages, letter for letter (BuildKit runs it once), with one stage's caches
    assert apt_runs[0] == apt_runs[1]
    assert re.findall(r"id=(mlbuild-apt-[^,]+)", apt_runs[0]) == [
        "mlbuild-apt-archives-bookworm-runtime", "mlbuild-apt-lists-bookworm-runtime"]
    # where the stages' apt steps differ (pip as the installer: ensurepip's package), each has its own
    # caches: apt locks them, and the two steps run side by side
    pip_kit = render(dataclasses.replace(spec, installer="pip"), buildkit=True)
    assert [re.findall(r"id=(mlbuild-apt-[^,]+)", line) for line in pip_kit.splitlines() if "apt-get" in line] == [
        ["mlbuild-apt-archives-bookworm-builder", "mlbuild-apt-lists-bookworm-builder"],
        ["mlbuild-apt-archives-bookworm-runtime", "mlbuild-apt-lists-bookworm-runtime"],
    ]
    assert "ENV PIP_CONFIG_FILE=/tmp/mlbuild-build/pip.conf PIP_DISABLE_PIP_VERSION_CHECK=1" in kit
    # the final stage depends on the builder stage only through its COPY: both build at once
    final = kit[kit.rindex("\nFROM ") :]
    assert "--from=builder" in final and final.index("apt-get") < final.index("--from=builder")


def test_the_buildkit_variant_is_hadolint_clean(tmp_path: Path) -> None:
    _, spec = load_and_resolve(EXAMPLE, "mlbuild-test/debian:bookworm")
    (tmp_path / "Dockerfile").write_text(render(spec, buildkit=True))
    done = subprocess.run([tool("hadolint"), "--config", str(ROOT / "tests" / "hadolint.yaml"), "--no-color",
                           str(tmp_path / "Dockerfile")], capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pip_conf_with_credentials_stays_outside_the_buildkit_context(tmp_path: Path) -> None:
    _, spec = load_and_resolve(EXAMPLE, "mlbuild-test/debian:bookworm")
    settings = BuildSettings(index_url="https://u:tok3n@idx.example/simple")
    context, secrets = tmp_path / "ctx", tmp_path / "secrets"
    context.mkdir()
    write_context(spec, context, EXAMPLE.parent, settings, secrets=secrets)
    assert not any("tok3n" in p.read_text(errors="replace") for p in context.rglob("*") if p.is_file())
    assert "tok3n" in (secrets / "pip.conf").read_text()
    assert (secrets / "pip.conf").stat().st_mode & 0o077 == 0
    classic = tmp_path / "classic"
    classic.mkdir()
    write_context(spec, classic, EXAMPLE.parent, settings)
    assert "tok3n" in (classic / "build-settings" / "pip.conf").read_text()  # as before, builder stage only


def test_the_site_config_names_the_builder(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("builder: classic\n")
    assert load_settings(env={}, config_path=str(config)).builder == "classic"
    assert load_settings(env={"MLBUILD_BUILDER": "buildkit"}, config_path=str(config)).builder == "buildkit"
    config.write_text("builder: fast\n")
    with pytest.raises(UsageError, match="site config builder: 'fast' is not one of auto, buildkit, classic"):
        load_settings(env={}, config_path=str(config))


# -- the pipeline ----------------------------------------------------------------------------------


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = tmp_path / "demo.yaml"
    path.write_text(EXAMPLE.read_text())
    return path


def engine_with(probe: BuilderProbe) -> FakeEngine:
    fake = FakeEngine()
    fake.add_image("mlbuild-test/debian:bookworm")
    fake.probe_result = probe
    return fake


DEBIAN = BuilderProbe(cli="/usr/bin/docker", argv=("/usr/bin/docker", "build"), env=(("DOCKER_BUILDKIT", "1"),),
                      reason="Debian's CLI")  # fmt: skip


def test_auto_builds_with_buildkit_where_a_cli_drives_it_with_the_secret_and_inline_cache(recipe: Path) -> None:
    engine, said = engine_with(DEBIAN), []
    result = build(recipe, engine=engine, settings=BuildSettings(), say=said.append,
                   options=BuildOptions(base_image=BASE, cache_from=("r:5000/x:1",)))  # fmt: skip
    kit = engine.kits[-1]
    assert kit is not None and kit.argv == DEBIAN.argv and kit.env == DEBIAN.env
    assert kit.secrets[0][0] == PIP_CONF_SECRET and kit.cache_from == ("r:5000/x:1",) and kit.inline_cache
    assert "builder: buildkit (auto: Debian's CLI)" in said and "--mount=type=cache" in engine.builds[-1]
    assert engine.labels(result.image_id)[BUILDER_LABEL] == "buildkit"  # verify rebuilds with it
    classic = build(recipe, engine=engine, settings=BuildSettings(builder="classic"),
                    options=BuildOptions(base_image=BASE))  # fmt: skip
    assert engine.kits[-1] is None and "--mount" not in engine.builds[-1]
    assert engine.labels(classic.image_id)[BUILDER_LABEL] == "classic"
    assert classic.content_tag != result.content_tag  # each builder's Dockerfile, each its own tag


def test_without_a_cli_auto_stays_classic_and_cache_from_is_refused(recipe: Path) -> None:
    engine = engine_with(BuilderProbe(reason="none here"))
    build(recipe, engine=engine, settings=BuildSettings(), options=BuildOptions(base_image=BASE))
    assert engine.kits == [None]
    with pytest.raises(UsageError, match="--cache-from needs the BuildKit builder"):
        build(recipe, engine=engine, settings=BuildSettings(), options=BuildOptions(cache_from=("r:5000/x:1",)))
    with pytest.raises(UsageError, match="no docker CLI here can drive BuildKit"):
        build(recipe, engine=engine, settings=BuildSettings(), options=BuildOptions(builder="buildkit"))
    with pytest.raises(UsageError, match="--builder 'fast'"):
        BuildOptions(builder="fast")
    with pytest.raises(UsageError, match="--cache-from"):
        BuildOptions(cache_from=("UPPER/Case;rm",))


def test_doctor_says_which_builder_auto_picks_and_why() -> None:
    found = builder_finding(DEBIAN)
    assert found["builder"] == "buildkit" and found["what"] == "builder: auto picks buildkit (auto: Debian's CLI)"
    none = builder_finding(BuilderProbe(reason="/usr/local/bin/docker: no buildx"), site="classic")
    assert none["builder"] == "classic" and "no buildx" in none["what"] and "buildx plugin" in none["remedy"]
    assert "the site's builder: classic" in none["what"]


def test_a_full_disk_line_long_before_the_end_of_a_step_is_kept_in_the_details() -> None:
    from builder.errors import step_details

    lines = ["Downloading numpy", "failed to write `x.py`: No space left on device (os error 28)"]
    lines += [f"hint line {n}" for n in range(20)]
    details = step_details(lines)
    assert details[0] == lines[1] and details[1:] == lines[-15:]
    assert step_details(lines[2:]) == lines[-15:]  # nothing about the disk: the last lines only
