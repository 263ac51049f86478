"""Image safety of the shared example image (`sklearn_build`): a numeric non-root user, no
setuid file beyond the base's own, no CA bundle, pip configuration or build tools in the final
stage, nothing of uv (the builder stage's installer)."""

from __future__ import annotations

import json
from typing import Any

import imagescan
import pytest

pytestmark = pytest.mark.integration


def _setuid_files(engine: Any, image: str) -> set[str]:
    script = (
        "import os, stat\n"
        "for root, dirs, files in os.walk('/'):\n"
        "    skip = ('/proc', '/sys', '/dev')\n"
        "    dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]\n"
        "    for f in files:\n"
        "        p = os.path.join(root, f)\n"
        "        try:\n"
        "            m = os.lstat(p).st_mode\n"
        "        except OSError:\n"
        "            continue\n"
        "        if stat.S_ISREG(m) and m & (stat.S_ISUID | stat.S_ISGID):\n"
        "            print(p)\n"
    )
    run = engine.run(image, ["-c", script], entrypoint=["python3"], user="0")
    assert run.exit_code == 0, run.stderr
    return set(run.stdout.split())


def test_image_runs_as_numeric_non_root_user(sklearn_build: Any, engine: Any) -> None:
    user = engine.inspect(sklearn_build.image_id)["Config"]["User"]
    assert user.isdigit() and int(user) != 0
    run = engine.run(sklearn_build.image_id, ["python", "-c", "import os; print(os.getuid(), os.getgid())"])
    assert run.stdout.split() == [user, "0"]


def test_no_setuid_file_added(sklearn_build: Any, engine: Any) -> None:
    base = sklearn_build.base.ref
    # The base has no python3: list its setuid files with the image's own Python, over its root.
    image = _setuid_files(engine, sklearn_build.image_id)
    run = engine.run(base, ["/bin/sh", "-c", "find / -xdev -perm /6000 -type f 2>/dev/null"])
    assert run.exit_code in (0, 1), run.stderr
    assert image <= set(run.stdout.split()), image - set(run.stdout.split())


def seen_inside(engine: Any, image: str, script: str) -> dict[str, Any]:
    """What a Python script run as root in the image prints as its last line (JSON)."""
    run = engine.run(image, ["python", "-c", script], user="0")
    found: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return found


def test_no_ca_bundle_or_build_tools_in_the_final_image(sklearn_build: Any, engine: Any) -> None:
    script = (
        "import os, shutil, json\n"
        "print(json.dumps({'build': os.path.exists('/tmp/mlbuild-build'),"
        " 'pipconf': os.environ.get('PIP_CONFIG_FILE'),"
        " 'tools': [t for t in ('gcc', 'cc', 'make', 'g++', 'git') if shutil.which(t)],"
        " 'pip_cache': os.path.exists('/root/.cache/pip')}))\n"
    )
    seen = seen_inside(engine, sklearn_build.image_id, script)
    assert seen == {"build": False, "pipconf": None, "tools": [], "pip_cache": False}
    # No layer holds the builder stage's settings folder (the site CA bundle and pip.conf);
    # test_secrets.py checks the same with a canary inside the CA bundle.
    paths = [p for _, p, _ in imagescan.layer_members(engine, sklearn_build.image_id)]
    assert paths and not [p for p in paths if "mlbuild-build" in p or p.endswith("pip.conf")]


def test_nothing_of_uv_in_the_final_image(sklearn_build: Any, engine: Any) -> None:
    """uv installed the environment (issue 14): neither uv, its cache, its settings nor its
    environment variables stay in the image, its history or its layers."""
    assert '/uv", "pip", "install"' in sklearn_build.dockerfile  # uv did install the environment
    image = engine.inspect(sklearn_build.image_id)
    # the one uv setting an image carries is on purpose: images built FROM it keep its constraints
    extend = "UV_CONSTRAINT=/opt/mlbuild/constraints.txt"
    env = [e for e in image["Config"]["Env"] or [] if e != extend]
    assert not [e for e in env if e.startswith(("UV_", "SSL_CERT_FILE"))], env
    script = (
        "import os, shutil, json, glob, sys\n"
        "print(json.dumps({'uv': shutil.which('uv'), 'target': os.path.exists('/tmp/mlbuild-build'),"
        " 'caches': glob.glob('/root/.cache/uv') + glob.glob('/home/*/.cache/uv'),"
        " 'in_venv': glob.glob(sys.prefix + '/bin/uv*') + glob.glob(sys.prefix + '/lib/python*/site-packages/uv'),"
        " 'installer': sorted({open(p).read().strip() for p in glob.glob(sys.prefix + '/lib/python*/site-packages/"
        "*.dist-info/INSTALLER')})}))\n"
    )
    seen = seen_inside(engine, sklearn_build.image_id, script)
    # uv installed the packages (their INSTALLER says so) and left nothing of itself
    assert "uv" in seen.pop("installer"), seen
    assert seen == {"uv": None, "target": False, "caches": [], "in_venv": []}, seen
    history = engine.history(sklearn_build.image_id)
    created = " ".join(h.get("CreatedBy") or "" for h in history).replace(extend, "")
    assert "UV_" not in created and "mlbuild-build" not in created and "uv.toml" not in created
    paths = [p for _, p, _ in imagescan.layer_members(engine, sklearn_build.image_id)]
    assert not [p for p in paths if "mlbuild-build" in p or p.endswith(("uv.toml", "/uv")) or "/.cache/uv" in p]
