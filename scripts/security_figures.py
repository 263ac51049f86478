#!/usr/bin/env python3
"""The figures of SECURITY.md, counted from the tests themselves: none is typed by hand.

    python scripts/security_figures.py                # print the figures section
    python scripts/security_figures.py --write        # and put it into SECURITY.md
    python scripts/security_figures.py --run --write  # also run the tests: the last-run section

Each count is a number of tests pytest collects or the length of a table the tests are
parametrized with, so it changes when the tests do; tests/unit/test_security_figures.py fails
when SECURITY.md says something else. The last-run section (pass/fail counts, times, the
generated cases hypothesis reports) comes only from a run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SECURITY = ROOT / "SECURITY.md"
FILES = {
    "bad input": "tests/unit/test_fuzz_recipes.py",
    "injection": "tests/integration/test_injection.py",
    "secrets": "tests/integration/test_secrets.py",
    "faults": "tests/integration/test_faults.py",
    "image safety": "tests/integration/test_image_safety.py",
}
FIGURES, LAST_RUN = "figures", "last run"
SCRIPT = "python scripts/security_figures.py"
COMMAND = {FIGURES: f"{SCRIPT} --write", LAST_RUN: f"{SCRIPT} --run --write"}


def begin(section: str) -> str:
    return f"<!-- {section}: printed by `{COMMAND[section]}`; do not edit by hand -->"


def end(section: str) -> str:
    return f"<!-- end of {section} -->"


@dataclass(frozen=True)
class Test:
    file: str  # as in FILES
    function: str  # without parameters
    markers: frozenset[str]


_COLLECT = """
import json, sys, pytest
class Report:
    def pytest_collection_finish(self, session):
        for item in session.items:
            doc = {"file": item.location[0], "function": item.originalname,
                   "markers": sorted({m.name for m in item.iter_markers()})}
            print("COLLECTED " + json.dumps(doc))
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[Report()]))
"""


@cache
def collect(paths: tuple[str, ...]) -> tuple[Test, ...]:
    done = subprocess.run([sys.executable, "-c", _COLLECT, *paths], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"pytest could not collect {' '.join(paths)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    docs = [json.loads(line[len("COLLECTED ") :]) for line in done.stdout.splitlines() if line.startswith("COLLECTED ")]
    return tuple(Test(d["file"], d["function"], frozenset(d["markers"])) for d in docs)


def load(path: str) -> ModuleType:
    """A test module's tables, imported the way pytest imports it (rootdir-relative paths)."""
    for folder in (ROOT, ROOT / "tests", (ROOT / path).parent):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"_figures_{Path(path).stem}", ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Row:
    what: str
    count: int
    checked: str


def rows() -> list[Row]:
    tests = collect(tuple(FILES.values()))

    def select(area: str, *functions: str, marker: str | None = None, without: str | None = None) -> list[Test]:
        return [
            t for t in tests
            if t.file == FILES[area] and (not functions or t.function in functions)
            and (marker is None or marker in t.markers) and (without is None or without not in t.markers)
        ]  # fmt: skip

    def n(area: str, *functions: str, marker: str | None = None, without: str | None = None) -> int:
        return len(select(area, *functions, marker=marker, without=without))

    def names(area: str, marker: str | None = None, without: str | None = None) -> str:
        chosen = select(area, marker=marker, without=without)
        return "; ".join(t.function.removeprefix("test_").replace("_", " ") for t in chosen)

    fuzz, inj, sec = load(FILES["bad input"]), load(FILES["injection"]), load(FILES["secrets"])
    properties = {t.function for t in tests if getattr(getattr(fuzz, t.function, None), "is_hypothesis_test", False)}
    payloads, fields = len(fuzz.PAYLOADS), len(fuzz.FUZZED_FIELDS)
    accepted = {
        "env value": len(inj.ACCEPTED_ENV), "requirement marker": len(inj.ACCEPTED_PACKAGES),
        "smoke command": len(inj.ACCEPTED_SMOKE), "file": len(inj.ACCEPTED_FILES),
    }  # fmt: skip
    searches = n("secrets", "test_no_secret_in")
    places = len(sec.PLACES)
    builders = searches // places  # the secrets module builds on each builder (BuildKit, classic)
    return [
        Row(f"hand-written hostile recipe documents ({len(fuzz.BAD_DOCUMENTS)}) and `files:` sources that "
            f"leave the recipe's folder through a symlink ({len(fuzz.SYMLINKS_OUT)})",
            n("bad input", "test_bad_documents_are_refused_cleanly",
              "test_symlink_out_of_the_recipe_folder_is_refused"),
            "all refused, exit 2, problem named, no traceback"),
        Row(f"generated recipes and documents (hypothesis: {len(properties)} properties x "
            f"{fuzz.FUZZ.max_examples} examples, {'derandomized' if fuzz.FUZZ.derandomize else 'random'})",
            len(properties) * fuzz.FUZZ.max_examples,
            "only a spec or a clean RecipeError/ResolveError; every accepted spec inert"),
        Row(f"payload strings of the fuzz table in every recipe field ({payloads} x {fields} fields), "
            f"and as an env name and a file destination ({payloads} x 2)",
            payloads * fields + payloads * 2, "refused, or accepted and inert"),
        Row(f"field x payload injections through the CLI ({len(inj.FIELDS)} fields x {len(inj.PAYLOADS)} "
            f"payloads, and newlines in {' and '.join(inj.ACCEPTED_FIELDS)})",
            n("injection", "test_refused_with_exit_2_and_no_build"),
            "all refused with exit 2 before any engine was contacted; no context written"),
        Row("accepted payloads built for real in one image ("
            + ", ".join(f"{v} {k}{'' if v == 1 else 's'}" for k, v in accepted.items()) + ")", sum(accepted.values()),
            "nothing ran (no `/tmp/pwned-*`), every value arrived literally (image config, container "
            "environment, spec label, file)"),
        Row(f"canary secrets ({', '.join(sec.CANARIES)})", len(sec.CANARIES),
            f"found in none of the {places} places searched after a build with each of {builders} builders; "
            "the index token and proxy password were seen arriving at the build's pip"),
        Row(f"places searched for them: {'; '.join(sec.PLACES)}", searches,
            f"one test each per builder ({builders}), after a real build and push"),
        Row(f"faults injected on real engines: {names('faults', marker='integration')}",
            n("faults", marker="integration"), "clear messages, exit 1 (130/143 for signals), nothing left behind"),
        Row(f"cleanup checks with a fake engine: {names('faults', without='integration')}",
            n("faults", without="integration"), "pass"),
        Row(f"image safety checks on the example image: {names('image safety')}", n("image safety"), "pass"),
    ]  # fmt: skip


def figures_section() -> str:
    lines = ["| what | count | what the tests check |", "|---|---:|---|"]
    lines += [f"| {r.what} | {r.count} | {r.checked} |" for r in rows()]
    return "\n".join([begin(FIGURES), *lines, end(FIGURES)])


def collected_per_file() -> dict[str, int]:
    tests = collect(tuple(FILES.values()))
    return {path: sum(1 for t in tests if t.file == path) for path in FILES.values()}


def last_run_section() -> str:
    """Runs each test file (the integration ones need the Docker engine and root)."""
    table = ["| test file | tests | passed | failed | skipped | seconds |", "|---|---:|---:|---:|---:|---:|"]
    generated = 0
    failed_any = False
    for path in FILES.values():
        with tempfile.TemporaryDirectory() as tmp:
            xml = Path(tmp) / "r.xml"
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                 "--hypothesis-show-statistics", path],
                cwd=ROOT, capture_output=True, text=True,
            )  # fmt: skip
            suite = ET.parse(xml).getroot().find("testsuite")
        assert suite is not None
        total, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        failed_any |= failures + errors > 0
        passed = total - failures - errors - skipped
        seconds = float(suite.get("time", 0))
        table.append(f"| {path} | {total} | {passed} | {failures + errors} | {skipped} | {seconds:.0f} |")
        generated += sum(int(m) for m in re.findall(r"- (\d+) passing, 0 failing", done.stdout))
    engine = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    head = (
        f"Last run {dt.date.today().isoformat()}, on a {os.cpu_count()}-CPU machine with Docker Engine "
        f"{engine.stdout.strip() or '(none answered)'}: {'FAILURES' if failed_any else 'all passed'}; hypothesis "
        f"ran {generated} generated cases that passed."
    )
    return "\n".join([begin(LAST_RUN), head, "", *table, end(LAST_RUN)])


def section_in(text: str, section: str) -> str | None:
    start, stop = text.find(begin(section)), text.find(end(section))
    return text[start : stop + len(end(section))] if 0 <= start < stop else None


def replace_section(text: str, section: str, new: str) -> str:
    old = section_in(text, section)
    if old is None:
        raise SystemExit(f"SECURITY.md has no {section} section: put `{begin(section)}` and `{end(section)}` in it")
    return text.replace(old, new)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run the tests: the last-run section too")
    parser.add_argument("--write", action="store_true", help="replace the sections in SECURITY.md")
    args = parser.parse_args()
    sections = {FIGURES: figures_section()}
    if args.run:
        sections[LAST_RUN] = last_run_section()
    if not args.write:
        print("\n\n".join(sections.values()))
        return
    text = SECURITY.read_text()
    for section, new in sections.items():
        text = replace_section(text, section, new)
    SECURITY.write_text(text)
    print(f"wrote {', '.join(sections)} into {SECURITY.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
