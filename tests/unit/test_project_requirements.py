"""Real projects as input: a recipe's `requirements:` (requirements.txt, pyproject.toml, uv.lock)
read, merged with `packages:` and resolved into the spec, with every source named."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from builder.errors import RecipeError, ResolveError
from builder.platforms import LINUX_AARCH64
from builder.recipe import Recipe, parse_recipe
from builder.render import render, write_context
from builder.resolve import resolve
from builder.settings import BuildSettings
from builder.spec import ResolvedSpec

PROJECT = Path(__file__).resolve().parents[2] / "recipes" / "project"  # a real uv.lock (uv lock)
SKLEARN = 'name: proj\nframework: sklearn\nframework_version: "1.5"\npython: "3.11"\ncuda: cpu\n'


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def load(folder: Path, text: str, files: dict[str, str] | None = None) -> Recipe:
    write(folder, files or {})
    return parse_recipe(text.encode(), folder / "recipe.yaml")


def problems(folder: Path, text: str, files: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load(folder, text, files)
    assert info.value.exit_code == 2
    return info.value.details


def resolve_error(folder: Path, text: str, files: dict[str, str] | None = None) -> ResolveError:
    recipe = load(folder, text, files)
    with pytest.raises(ResolveError) as info:
        resolve(recipe)
    assert info.value.exit_code == 2
    return info.value


def tinyproj(folder: Path) -> None:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(PROJECT / name, folder / name)


# -- requirements.txt ----------------------------------------------------------------------------
def test_requirements_file_with_include_markers_and_comments(tmp_path: Path) -> None:
    recipe = load(
        tmp_path,
        SKLEARN + "requirements: requirements.txt\npackages: [rich]\n",
        {
            "requirements.txt": "# the app\n-r reqs/base.txt\n\ntabulate==0.9.0  # tables\n"
            "numpy<2; python_version < '3.13' \\\n  and sys_platform == 'linux'\n",
            "reqs/base.txt": "pandas==2.2.3\n--requirement=common.txt\n",
            "reqs/common.txt": "six>=1.16\n",
        },
    )
    spec = resolve(recipe)
    assert spec.requirements == (
        "rich",
        "pandas==2.2.3",
        "six>=1.16",
        "tabulate==0.9.0",
        'numpy<2; python_version < "3.13" and sys_platform == "linux"',
    )
    assert dict(spec.requirement_sources) == {
        "rich": "packages[0]",
        "pandas==2.2.3": "reqs/base.txt line 1",
        "six>=1.16": "reqs/common.txt line 1",
        "tabulate==0.9.0": "requirements.txt line 4",
        'numpy<2; python_version < "3.13" and sys_platform == "linux"': "requirements.txt line 5",
    }
    assert "requirements: 4 from requirements.txt" in spec.reasons


def test_constraints_file_limits_versions_and_installs_nothing(tmp_path: Path) -> None:
    recipe = load(
        tmp_path,
        SKLEARN + "requirements: requirements.txt\n",
        {"requirements.txt": "pandas\n-c constraints.txt\n", "constraints.txt": "numpy==1.26.4\n"},
    )
    spec = resolve(recipe)
    assert spec.requirements == ("pandas",)
    assert spec.requirement_constraints == ("numpy==1.26.4",)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    dockerfile = write_context(spec, ctx, tmp_path, BuildSettings())
    assert (ctx / "mlbuild" / "constraints-project.txt").read_text() == "numpy==1.26.4\n"
    assert '"-c", "/tmp/mlbuild/constraints-project.txt", "-r", "/tmp/mlbuild/requirements-1.txt"' in dockerfile


def test_hashed_requirements_get_their_own_step_by_hash(tmp_path: Path) -> None:
    h1, h2 = "a" * 64, "b" * 64
    recipe = load(
        tmp_path,
        SKLEARN + "requirements: requirements.txt\npackages: [rich]\n",
        {"requirements.txt": f"tabulate==0.9.0 \\\n    --hash=sha256:{h1} \\\n    --hash=sha256:{h2.upper()}\n"},
    )
    spec = resolve(recipe)
    assert spec.hashed_requirements == (("tabulate==0.9.0", f"sha256:{h1} sha256:{h2}"),)
    assert spec.requirements == ("rich",)
    assert spec.packages == ("scikit-learn==1.5.2", "tabulate==0.9.0", "rich")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    dockerfile = write_context(spec, ctx, tmp_path, BuildSettings())
    assert (ctx / "mlbuild" / "requirements-project.txt").read_text() == (
        f"tabulate==0.9.0 --hash=sha256:{h1} --hash=sha256:{h2}\n"
    )
    project = dockerfile.index('requirements-project.txt"]')
    assert dockerfile.index('requirements-framework.txt"]') < project < dockerfile.index('requirements-1.txt"]')
    assert '"--require-hashes", "-c", "/tmp/mlbuild/constraints.txt"' in dockerfile
    # the packages step may not move a hashed pin
    assert (ctx / "mlbuild" / "constraints-project.txt").read_text() == "tabulate==0.9.0\n"


def test_some_hashed_some_not_is_refused_naming_both_lines(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        SKLEARN + "requirements: requirements.txt\n",
        {"requirements.txt": f"tabulate==0.9.0 --hash=sha256:{'a' * 64}\nsix\n"},
    )
    assert any(
        "requirements.txt line 2: 'six' has no --hash, but requirements.txt line 1 has one" in p for p in found
    ), found


def test_hashes_need_an_exact_pin(tmp_path: Path) -> None:
    found = problems(
        tmp_path, SKLEARN + "requirements: r.txt\n", {"r.txt": f"tabulate>=0.9 --hash=sha256:{'a' * 64}\n"}
    )
    assert "has hashes but no exact pin" in "\n".join(found)


# -- pyproject.toml ------------------------------------------------------------------------------
PYPROJECT = """
[project]
name = "My_Proj"
version = "1"
requires-python = ">=3.10,<3.13"
dependencies = ["tabulate==0.9.0", "six"]

[project.optional-dependencies]
train = ["pandas>=2"]
all = ["my-proj[train,eval]"]
eval = ["rich"]

[dependency-groups]
test = ["iniconfig", {include-group = "lint"}]
lint = ["pyflakes"]
"""


def test_pyproject_dependencies_extras_and_groups(tmp_path: Path) -> None:
    recipe = load(
        tmp_path,
        "name: p\nframework: sklearn\ncuda: cpu\nrequirements: {path: pyproject.toml, extras: [all], groups: [Test]}\n",
        {"pyproject.toml": PYPROJECT},
    )
    spec = resolve(recipe)
    assert spec.requirements == ("tabulate==0.9.0", "six", "rich", "pandas>=2", "iniconfig", "pyflakes")
    sources = dict(spec.requirement_sources)
    assert sources["pandas>=2"] == "pyproject.toml [project.optional-dependencies] train[0]"
    assert sources["pyflakes"] == "pyproject.toml [dependency-groups] lint[0]"
    assert sources["six"] == "pyproject.toml [project] dependencies[1]"
    # requires-python <3.13 chooses the Python, where the framework alone would take a newer one
    assert spec.python == "3.12"


def test_pyproject_names_unknown_extras_and_groups_with_what_exists(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        SKLEARN + "requirements: {path: pyproject.toml, extras: [gpu], groups: [docs]}\n",
        {"pyproject.toml": PYPROJECT},
    )
    text = "\n".join(found)
    assert (
        "requirements.path: pyproject.toml: no extra 'gpu'; [project.optional-dependencies] has: all, eval, train"
        in text
    )
    assert "no dependency group 'docs'; [dependency-groups] has: lint, test" in text


def test_pyproject_dynamic_dependencies_are_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        SKLEARN + "requirements: pyproject.toml\n",
        {"pyproject.toml": '[project]\nname = "x"\nversion = "1"\ndynamic = ["dependencies"]\n'},
    )
    assert "declares its dependencies dynamic" in "\n".join(found)


def test_python_outside_requires_python_is_refused(tmp_path: Path) -> None:
    err = resolve_error(
        tmp_path,
        'name: p\nframework: sklearn\npython: "3.9"\ncuda: cpu\nrequirements: pyproject.toml\n',
        {"pyproject.toml": PYPROJECT},
    )
    assert err.message == "python: '3.9' is outside requires-python <3.13,>=3.10 of pyproject.toml"


def test_extras_on_a_requirements_file_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, SKLEARN + "requirements: {path: r.txt, extras: [x]}\n", {"r.txt": "six\n"})
    assert "extras and groups apply to a pyproject.toml or a uv.lock" in "\n".join(found)


# -- uv.lock -------------------------------------------------------------------------------------
def test_uv_lock_gives_exact_pins_with_this_platforms_wheel_hashes(tmp_path: Path) -> None:
    tinyproj(tmp_path)
    spec = resolve(load(tmp_path, SKLEARN + "requirements: uv.lock\n"))
    pins = dict(spec.hashed_requirements)
    assert sorted(pins) == [
        "markupsafe==3.0.4", "python-dateutil==4.0.0", "tabulate==0.9.0", "tzdata==2026.6",
    ]  # fmt: skip
    lock = (tmp_path / "uv.lock").read_text()
    wheel = re.search(r"/(markupsafe-3\.0\.4-cp311-cp311-manylinux[^\"]*x86_64\.whl)\", hash = \"(sha256:\w+)\"", lock)
    assert wheel and pins["markupsafe==3.0.4"] == wheel.group(2)  # the one cp311 linux x86_64 wheel
    assert spec.requirements == ()
    assert all(src == "uv.lock" for _, src in spec.requirement_sources)


def test_uv_lock_markers_follow_the_images_python(tmp_path: Path) -> None:
    tinyproj(tmp_path)
    recipe = load(tmp_path, SKLEARN.replace('python: "3.11"', 'python: "3.10"') + "requirements: uv.lock\n")
    pins = dict(resolve(recipe).hashed_requirements)
    assert {"exceptiongroup==1.3.2", "typing-extensions==4.16.0", "python-dateutil==3.0.0", "six==1.17.0"} <= set(pins)
    assert "python-dateutil==4.0.0" not in pins


def test_uv_lock_extras_and_groups_by_name(tmp_path: Path) -> None:
    tinyproj(tmp_path)
    spec = resolve(load(tmp_path, SKLEARN + "requirements: {path: uv.lock, extras: [cli], groups: [dev]}\n"))
    pins = dict(spec.hashed_requirements)
    assert "click==8.5.1" in pins and "iniconfig==2.3.1" in pins
    assert not any(p.startswith("colorama") for p in pins)  # only on win32


def test_uv_lock_for_another_machine_takes_that_machines_wheels(tmp_path: Path) -> None:
    tinyproj(tmp_path)
    recipe = load(tmp_path, SKLEARN + "requirements: uv.lock\n")
    assert recipe.requirements is not None
    x86 = dict((e.requirement, e.hashes) for e in recipe.requirements.select("3.11"))
    arm = dict((e.requirement, e.hashes) for e in recipe.requirements.select("3.11", LINUX_AARCH64))
    assert x86["markupsafe==3.0.4"] != arm["markupsafe==3.0.4"]
    assert x86["tabulate==0.9.0"] == arm["tabulate==0.9.0"]  # py3-none-any


def test_uv_lock_framework_pin_narrows_and_its_deps_are_left_to_the_framework_step(tmp_path: Path) -> None:
    lock = (PROJECT / "uv.lock").read_text()
    lock = lock.replace(
        '    { name = "tabulate" },\n]\n',
        '    { name = "tabulate" },\n    { name = "scikit-learn" },\n]\n',
        1,
    )
    lock += (
        '\n[[package]]\nname = "scikit-learn"\nversion = "1.4.2"\nsource = { registry = "https://pypi.org/simple" }\n'
        'dependencies = [{ name = "joblib" }]\n'
        f'sdist = {{ url = "https://x/scikit_learn-1.4.2.tar.gz", hash = "sha256:{"c" * 64}" }}\n'
        '\n[[package]]\nname = "joblib"\nversion = "1.4.0"\nsource = { registry = "https://pypi.org/simple" }\n'
        f'sdist = {{ url = "https://x/joblib-1.4.0.tar.gz", hash = "sha256:{"d" * 64}" }}\n'
    )
    (tmp_path / "uv.lock").write_text(lock)
    spec = resolve(load(tmp_path, "name: p\nframework: sklearn\ncuda: cpu\nrequirements: uv.lock\n"))
    assert spec.framework_version == "1.4.2"  # the lock's pin chose the release
    pins = dict(spec.hashed_requirements)
    assert "scikit-learn==1.4.2" not in pins and "joblib==1.4.0" not in pins
    assert any("scikit-learn==1.4.2 (uv.lock): the framework step installs" in r for r in spec.reasons)


# -- the framework pin wins; conflicts name both sources ------------------------------------------
def test_framework_requirement_the_release_does_not_satisfy_names_both(tmp_path: Path) -> None:
    err = resolve_error(
        tmp_path,
        'name: t\nframework: pytorch\nframework_version: "2.5"\ncuda: cpu\nrequirements: requirements.txt\n',
        {"requirements.txt": "numpy\ntransformers\nrich\ntorch==2.3.0\n"},
    )
    assert err.message == (
        "requirements.txt line 4 asks torch==2.3.0; no pytorch release matching framework_version '2.5' fits it"
    )
    err = resolve_error(
        tmp_path,
        'name: t\nframework: pytorch\nframework_version: "2.5"\ncuda: cpu\nrequirements: requirements.txt\n',
        {"requirements.txt": "torch==2.3.0; python_version >= '3.8'\n"},
    )
    assert (
        err.message
        == 'requirements.txt line 1 asks torch==2.3.0; python_version >= "3.8"; the recipe resolves pytorch 2.5.1'
    )
    assert err.hint and 'framework_version: "2.3.0"' in err.hint


def test_framework_pin_in_the_file_chooses_the_release_when_the_recipe_does_not(tmp_path: Path) -> None:
    recipe = load(
        tmp_path,
        "name: t\nframework: pytorch\ncuda: cpu\nrequirements: requirements.txt\n",
        {"requirements.txt": "torch==2.4.1\ntorchvision\n"},
    )
    spec = resolve(recipe)
    assert spec.framework_version == "2.4.1"
    assert spec.framework_requirement == "torch==2.4.1+cpu"
    assert spec.companions == ("torchvision==0.19.1+cpu",)
    assert spec.requirements == ()
    assert dict(spec.requirement_sources)["torchvision==0.19.1+cpu"] == "requirements.txt line 2"


def test_companion_pin_in_the_file_narrows_to_its_pairing(tmp_path: Path) -> None:
    spec = resolve(
        load(
            tmp_path,
            "name: t\nframework: pytorch\ncuda: cpu\nrequirements: r.txt\n",
            {"r.txt": "torchvision==0.20.1\n"},
        )
    )
    assert spec.framework_version == "2.5.1"


def test_conflicting_pins_between_packages_and_the_file_name_both(tmp_path: Path) -> None:
    err = resolve_error(
        tmp_path,
        SKLEARN + "packages: [pandas, 'numpy>=2']\nrequirements: requirements.txt\n",
        {"requirements.txt": "-r base.txt\n", "base.txt": "tabulate\nnumpy==1.26.4\n"},
    )
    assert err.message == "packages[1] asks numpy>=2 and base.txt line 2 asks numpy==1.26.4: no version satisfies both"
    # compatible ones pass, and markers that do not hold for the image's Python do not count
    spec = resolve(
        load(
            tmp_path,
            SKLEARN
            + "packages: ['numpy>=1.20', 'numpy<1; python_version < \"3.9\"']\nrequirements: requirements.txt\n",
            {"base.txt": "numpy==1.26.4\n"},
        )
    )
    assert "numpy==1.26.4" in spec.requirements


def test_a_constraint_against_a_uv_lock_pin_is_a_conflict(tmp_path: Path) -> None:
    tinyproj(tmp_path)
    (tmp_path / "r.txt").write_text("-c c.txt\n")
    (tmp_path / "c.txt").write_text("tabulate<0.9\n")
    err = resolve_error(tmp_path, SKLEARN + "requirements: r.txt\npackages: [tabulate==0.9.0]\n")
    assert "packages[0] asks tabulate==0.9.0 and c.txt line 1 asks tabulate<0.9" in err.message


# -- the spec: canonical, hashed, and following the file's content ------------------------------
def test_spec_digest_follows_the_files_requirements_not_its_comments(tmp_path: Path) -> None:
    text = SKLEARN + "requirements: requirements.txt\n"
    first = resolve(load(tmp_path, text, {"requirements.txt": "tabulate==0.9.0\n"}))
    commented = resolve(load(tmp_path, text, {"requirements.txt": "# tables\ntabulate==0.9.0  # pinned\n"}))
    bumped = resolve(load(tmp_path, text, {"requirements.txt": "tabulate==0.8.10\n"}))
    assert bumped.digest() != first.digest()
    # a comment moves the line, and the line is the requirement's source: recorded, so it differs too
    assert dict(commented.requirement_sources) == {"tabulate==0.9.0": "requirements.txt line 2"}
    again = resolve(load(tmp_path, text, {"requirements.txt": "tabulate==0.9.0\n"}))
    assert again.to_json() == first.to_json()
    assert ResolvedSpec.from_dict(json.loads(first.to_json())) == first


def test_specs_without_a_requirements_file_keep_their_json(tmp_path: Path) -> None:
    spec = resolve(load(tmp_path, SKLEARN + "packages: [pandas==2.2.3]\n"))
    doc = spec.to_dict()
    assert not {"hashed_requirements", "requirement_constraints", "requirement_sources"} & set(doc)
    assert ResolvedSpec.from_dict(json.loads(spec.to_json())) == spec
    assert "requirements-project" not in render(spec)


def test_resolve_json_lists_every_requirement_with_its_source(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from builder.cli import main

    load(tmp_path, SKLEARN, {"requirements.txt": "tabulate==0.9.0\n"})
    (tmp_path / "recipe.yaml").write_text(SKLEARN + "requirements: requirements.txt\npackages: [rich]\n")
    done = CliRunner().invoke(main, ["resolve", str(tmp_path / "recipe.yaml"), "--json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.output)
    assert doc["requirement_sources"] == [["rich", "packages[0]"], ["tabulate==0.9.0", "requirements.txt line 1"]]
    text = CliRunner().invoke(main, ["resolve", str(tmp_path / "recipe.yaml")]).output
    assert "tabulate==0.9.0  (requirements.txt line 1)" in text


# -- lock and locked builds -----------------------------------------------------------------------
def test_lock_resolver_installs_the_hashed_step_and_the_lock_keeps_it(tmp_path: Path) -> None:
    import dataclasses

    from builder.lock import Lock, PythonPin, requirements_text
    from builder.render import resolver_dockerfile

    tinyproj(tmp_path)
    spec = resolve(load(tmp_path, SKLEARN + "requirements: uv.lock\npackages: [rich]\n"))
    resolver = resolver_dockerfile(spec)
    project = resolver.index('"--report", "/tmp/mlbuild-lock/project"')
    assert resolver.index("/tmp/mlbuild-lock/framework") < project < resolver.index("/tmp/mlbuild-lock/packages")
    assert '"install", "--require-hashes", "--report"' in resolver
    packages_step = resolver[resolver.index("/tmp/mlbuild-lock/packages") :]
    assert '"-c", "/tmp/mlbuild/constraints-project.txt"' in packages_step

    from test_lock import H1, make_lock

    plain = make_lock()
    assert "project" not in json.loads(plain.to_json())["python"]  # locks without a file stay as they were
    lock = dataclasses.replace(plain, python=(*plain.python, PythonPin("project", "tabulate", "0.9.0", (H1,))))
    doc = json.loads(lock.to_json())
    assert doc["python"]["project"] == {"tabulate": {"version": "0.9.0", "hashes": [H1]}}
    again = Lock.from_json(lock.to_json())
    assert again.to_json() == lock.to_json() and {p.step for p in again.python} == {"framework", "packages", "project"}
    pins = lock.pins()
    assert pins.project == requirements_text(lock.python, "project", None) == f"tabulate==0.9.0 --hash={H1}\n"
    locked = render(spec, pins)
    assert '"--no-deps", "--require-hashes", "-r", "/tmp/mlbuild/locked-project.txt"' in locked
    assert "COPY mlbuild/locked-project.txt mlbuild/layersplit.py /tmp/mlbuild/" in locked
