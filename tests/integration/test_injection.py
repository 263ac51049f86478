"""Injection, for real: hostile values in every recipe field that reaches the Dockerfile or a
shell. Those the validator refuses must give exit 2 before any engine is contacted; those it
accepts (env values, marker strings of requirements, smoke commands, file contents) go into ONE
real build, which must run none of them and carry each value literally.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

# What each payload tries: end the line, chain a command, substitute one, start an instruction,
# or be evaluated as Jinja. Every command would leave a file named /tmp/pwned-<n>.
PAYLOADS: dict[str, str] = {
    "newline": "x\nRUN touch /tmp/pwned-1",
    "semicolon": "x; touch /tmp/pwned-2",
    "and": "x && touch /tmp/pwned-3",
    "subst": "$(touch /tmp/pwned-4)",
    "backticks": "`touch /tmp/pwned-5`",
    "instruction": "RUN touch /tmp/pwned-6",
    "jinja-expr": "{{ 7*7 }}{{ p.base_image }}",
    "jinja-stmt": "{% if true %}touch /tmp/pwned-7{% endif %}",
    "quote": '"; touch /tmp/pwned-8; echo "',
    "backslash": "x\\",
    "var": "${HOME}$PATH",
}
PWNED = [f"/tmp/pwned-{i}" for i in range(1, 9)] + ["/pwned"]

# Where a value goes in a recipe: YAML for one field, with the payload as a JSON string.
FIELDS: dict[str, str] = {
    "name": "name: {v}",
    "framework_version": "framework_version: {v}",
    "python": "python: {v}",
    "cuda": "cuda: {v}",
    "base_image": "base_image: {v}",
    "packages": "packages: [{v}]",
    "packages (after a name)": "packages: [{pv}]",
    "system_packages": "system_packages: [{v}]",
    "system_packages (after a name)": "system_packages: [{gv}]",
    "env name": "env: {{{v}: x}}",
    "files src": "files: [{{src: {v}, dest: /w/x}}]",
    "files dest": "files: [{{src: ok.txt, dest: {v}}}]",
    "files dest (after a path)": "files: [{{src: ok.txt, dest: {dv}}}]",
    "workdir": "workdir: {v}",
    "workdir (after a path)": "workdir: {dv}",
    "user": "user: {v}",
    "image.repository": "image: {{repository: {v}}}",
    "image.tags": "image: {{tags: [{v}]}}",
    "gpu.min_driver": "gpu: {{min_driver: {v}}}",
    "gpu.archs": "gpu: {{archs: [{v}]}}",
}
# Accepted by design, and then inert: env values are ENV words escaped for Docker, smoke
# commands are the recipe's own shell commands (run in the image, never in the Dockerfile).
ACCEPTED_FIELDS = {"env value": "env: {{A: {v}}}", "smoke.run": "smoke: {{run: [{v}]}}"}
REFUSED = [(f, p) for f in FIELDS for p in PAYLOADS]
# one-line payloads are accepted in env values and smoke commands; a newline never is
REFUSED += [(f, "newline") for f in ACCEPTED_FIELDS]


def recipe_text(template: str, payload: str) -> str:
    j = json.dumps  # a JSON string is a YAML string
    return "name: inj\nframework: sklearn\n" + template.format(
        v=j(payload), pv=j("pandas" + payload), gv=j("git" + payload), dv=j("/w/" + payload)
    ) + "\n"  # fmt: skip


@pytest.fixture
def restore_signals() -> Iterator[None]:
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("field", "payload"), REFUSED, ids=[f"{f}-{p}" for f, p in REFUSED])
def test_refused_with_exit_2_and_no_build(field: str, payload: str, tmp_path: Path, restore_signals: None) -> None:
    from builder.cli import main

    (tmp_path / "ok.txt").write_text("ok\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_text({**FIELDS, **ACCEPTED_FIELDS}[field], PAYLOADS[payload]))
    # An engine that cannot answer: reaching it would be exit 1, not 2.
    env = {"DOCKER_HOST": f"tcp://127.0.0.1:{closed_port()}", "TMPDIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["build", str(recipe)], env=env)
    assert result.exit_code == 2, result.output
    assert f"error: {recipe}: " in result.output and "Traceback" not in result.output
    assert "engine" not in result.output
    assert not list(tmp_path.glob("mlbuild-context-*"))


ACCEPTED_ENV = {f"EVIL_{k.upper().replace('-', '_')}": v for k, v in PAYLOADS.items() if "\n" not in v}
ACCEPTED_PACKAGES = ['pandas==2.2.3; os_name != "$(touch /tmp/pwned-4)`touch /tmp/pwned-5`;{{ 7*7 }}"']
ACCEPTED_SMOKE = ["echo '{{ 7*7 }}' '{% raw %}' \"$EVIL_SUBST\"", "test ! -e /tmp/pwned-4"]
# files: whose content is every payload, one per line
ACCEPTED_FILES = {"payload.txt": "/workspace/payload.txt"}


@pytest.fixture(scope="module")
def hostile_build(bookworm_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One real build carrying every accepted payload at once."""
    import yaml

    folder = tmp_path_factory.mktemp("inj")
    for src in ACCEPTED_FILES:
        (folder / src).write_text("\n".join(PAYLOADS.values()) + "\n")
    doc = {
        "name": "injection-probe", "framework": "sklearn", "framework_version": "1.5",
        "python": "3.11", "cuda": "cpu", "packages": ACCEPTED_PACKAGES, "env": ACCEPTED_ENV,
        "files": [{"src": src, "dest": dest} for src, dest in ACCEPTED_FILES.items()],
        "workdir": "/workspace", "smoke": {"run": ACCEPTED_SMOKE},
    }  # fmt: skip
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(doc, allow_unicode=True))
    env = {**os.environ, "TMPDIR": str(folder)}
    rendered = subprocess.run([sys.executable, "-m", "builder", "render", str(recipe)],
                              capture_output=True, text=True, cwd=ROOT, env=env)  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    out = subprocess.run(
        [sys.executable, "-m", "builder", "build", str(recipe), "--base-image", bookworm_base,
         "--json", "--rebuild"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout)
    yield {"result": result, "dockerfile": rendered.stdout, "log": out.stderr, "folder": folder}
    from builder.engine import Engine

    engine = Engine.connect()
    for tag in result["tags"]:
        engine.remove_image(tag)


def test_accepted_payloads_ran_nowhere_and_arrive_literally(hostile_build: dict[str, Any], engine: Any) -> None:
    image = hostile_build["result"]["image_id"]
    attrs = engine.inspect(image)
    config_env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    for key, value in ACCEPTED_ENV.items():
        assert config_env[key] == value, key
    check = (
        "import json, os, sys\n"
        f"paths = {PWNED!r}\n"
        "print(json.dumps({'found': [p for p in paths if os.path.exists(p)],"
        " 'env': {k: v for k, v in os.environ.items() if k.startswith('EVIL_')},"
        f" 'files': [open(p).read() for p in {list(ACCEPTED_FILES.values())!r}]}}))\n"
    )
    run = engine.run(image, ["python", "-c", check])
    assert run.exit_code == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["found"] == []
    assert seen["env"] == ACCEPTED_ENV
    assert seen["files"] == ["\n".join(PAYLOADS.values()) + "\n"] * len(ACCEPTED_FILES)
    # The spec label keeps the values as text: Jinja never evaluated them.
    spec = json.loads(attrs["Config"]["Labels"]["org.mlbuild.spec"])
    assert dict(map(tuple, spec["env"])) == ACCEPTED_ENV
    assert spec["smoke_run"] == ACCEPTED_SMOKE
    pairs = zip(ACCEPTED_PACKAGES, spec["requirements"], strict=True)
    assert all(p.split(";")[0] in r for p, r in pairs), spec["requirements"]


def test_accepted_payloads_add_no_instruction(hostile_build: dict[str, Any]) -> None:
    text = hostile_build["dockerfile"]
    lines = [x for x in text.split("\n") if x and not x.startswith("#")]
    runs = [x for x in lines if x.startswith("RUN ")]
    assert not any("pwned" in x for x in runs)
    assert "49" not in text  # {{ 7*7 }} stayed text
    for key in ACCEPTED_ENV:
        assert sum(x.startswith(f"ENV {key}=") for x in lines) == 1
    # the image's history has exactly the Dockerfile's RUN steps, none of them a payload's
    assert all(x.split(" ", 1)[0] in {"FROM", "ENV", "RUN", "COPY", "WORKDIR", "LABEL", "USER", "CMD"} for x in lines)


def test_history_has_no_payload_step(hostile_build: dict[str, Any], engine: Any) -> None:
    history = engine.history(hostile_build["result"]["image_id"])
    for entry in history:
        created_by = entry.get("CreatedBy") or ""
        if "touch /tmp/pwned" in created_by:
            # the classic builder writes "/bin/sh -c #(nop)  ENV ...", BuildKit "ENV ..."
            assert created_by.lstrip().startswith(("/bin/sh -c #(nop)  ENV", "/bin/sh -c #(nop)  LABEL",
                                                   "ENV ", "LABEL ")), created_by  # fmt: skip
