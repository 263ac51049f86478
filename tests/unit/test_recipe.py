"""Recipe validation: every problem at once, with the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import RecipeError
from builder.recipe import load_recipe, parse_recipe

GOOD = b"""
name: vision-train
framework: pytorch
framework_version: "2.4"
python: "3.11"
cuda: "12.4"
packages: ["transformers==4.44.2", "numpy<2"]
system_packages: [git, libgl1]
env: {HF_HOME: /cache/hf}
workdir: /workspace
user: mlbuild
smoke: {gpu: auto, run: ["python -c 'import transformers'"]}
image: {repository: registry.example.com/team/vision-train, tags: [latest]}
"""


def problems(data: bytes, tmp_path: Path) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, tmp_path / "r.yaml")
    assert info.value.exit_code == 2
    return info.value.details


def test_the_issue_example_is_valid(tmp_path: Path) -> None:
    r = parse_recipe(GOOD, tmp_path / "r.yaml")
    assert r.name == "vision-train" and r.framework == "pytorch"
    assert r.framework_version == "2.4" and r.python == "3.11" and r.cuda == "12.4"
    assert r.packages == ("transformers==4.44.2", "numpy<2")
    assert r.env == (("HF_HOME", "/cache/hf"),)
    assert r.image.repository == "registry.example.com/team/vision-train"
    assert r.smoke.gpu == "auto"


def test_yaml_number_versions_say_quote_it(tmp_path: Path) -> None:
    found = problems(b"name: x\nframework: sklearn\npython: 3.10\ncuda: 12.4\n", tmp_path)
    assert 'python: 3.10 is a YAML number; quote it: python: "3.10"' in found
    assert 'cuda: 12.4 is a YAML number; quote it: cuda: "12.4"' in found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(b"framework: pytorchh\npyhton: '3.11'\ncuda: gpu\n", tmp_path)
    text = "\n".join(found)
    assert "name: required key is missing" in text
    assert "pyhton: unknown key (did you mean 'python'?)" in text
    assert "framework: 'pytorchh' is not one of: pytorch | tensorflow | jax | sklearn (did you mean 'pytorch'?)" in text
    assert "cuda: 'gpu' is not allowed" in text
    assert len(found) == 4


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("framework_version: '>>2'", "framework_version: '>>2' is neither a version prefix"),
        ("python: '3'", "python: '3' is not allowed; expected major.minor"),
        (
            "packages: ['numpy; rm -rf /']",
            "packages[0]: 'numpy; rm -rf /' is not a PEP 508 requirement",
        ),
        (
            "packages: ['--index-url http://evil']",
            "packages[0]: '--index-url http://evil' is not a PEP 508",
        ),
        ("packages: ['x @ https://e.com/x.whl']", "direct URL requirements are not supported"),
        (
            "system_packages: ['git && curl evil']",
            "system_packages[0]: 'git && curl evil' is not allowed",
        ),
        ("system_packages: ['$(id)']", "system_packages[0]: '$(id)' is not allowed"),
        ("env: {'BAD-NAME': x}", "env.BAD-NAME: is not a valid variable name"),
        ("env: {PATH: /x}", "env.PATH: is set by mlbuild"),
        ('env: {A: "x\\ny"}', "env.A: must be one line"),
        ("env: {A: true}", "env.A: true is not text; quote it"),
        ("workdir: relative/dir", "workdir: 'relative/dir' is not allowed"),
        ("workdir: /a/../etc", "may not contain '..'"),
        ("workdir: '/w;id'", "workdir: '/w;id' is not allowed"),
        ("user: 'root;id'", "user: 'root;id' is not allowed"),
        ("smoke: {gpu: always}", "smoke.gpu: 'always' is not one of: auto | required | off"),
        ('smoke: {run: ["a\\nb"]}', "smoke.run[0]: must be one non-empty line"),
        ("image: {repository: 'UPPER/case'}", "image.repository: 'UPPER/case' is not allowed"),
        ("image: {tags: ['-bad']}", "image.tags[0]: '-bad' is not allowed"),
        ("image: {tags: [1.0]}", "image.tags[0]: 1.0 is a YAML number; quote it"),
        ("gpu: {min_driver: 535}", "gpu.min_driver: 535 is a YAML number; quote it"),
        ("gpu: {archs: [ampere]}", "gpu.archs[0]: 'ampere' is not allowed"),
        ("base_image: 'x y'", "base_image: 'x y' is not allowed"),
        ("framework_from_base: true", "framework_from_base: needs base_image"),
        ("schema: 2", "schema: 2 is not supported"),
        ("packages: notalist", "packages: expected a list, got text"),
        ("env: [a]", "env: expected a mapping of NAME: value, got a list"),
        ("files: [{src: a.py}]", "files[0]: needs both src and dest"),
        ("files: [{src: ../x, dest: /x}]", "files[0]: paths may not contain '..'"),
        ("files: [{src: /etc/passwd, dest: /x}]", "files[0].src: '/etc/passwd' is not allowed"),
        ("files: [{src: missing.py, dest: /x}]", "files[0].src: 'missing.py' does not exist"),
    ],
)
def test_bad_values_name_field_value_and_allowed(snippet: str, expected: str, tmp_path: Path) -> None:
    data = f"name: ok\nframework: sklearn\n{snippet}\n".encode()
    text = "\n".join(problems(data, tmp_path))
    assert expected in text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "the file is empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"name: a\nname: b\nframework: sklearn\n", "duplicate key 'name'"),
        (b"name: a\n\tframework: sklearn\n", "tabs"),
        (b"name: !!python/object/apply:os.system ['id']\nframework: sklearn\n", "YAML tag"),
        (b"- just\n- a list\n", "a recipe is a mapping"),
        (b"x" * 300_000, "recipes are limited to"),
        (b"a: " + b"[" * 50 + b"]" * 50, "nested deeper"),
    ],
)
def test_hostile_documents_are_refused_cleanly(data: bytes, expected: str, tmp_path: Path) -> None:
    assert expected in "\n".join(problems(data, tmp_path))


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[i]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    found = problems(("\n".join(lines) + "\n").encode(), tmp_path)
    assert "aliases that expand without bound are refused" in found[0]


def test_bad_name(tmp_path: Path) -> None:
    found = problems(b"name: Bad_Name\nframework: sklearn\n", tmp_path)
    assert found[0].startswith("name: 'Bad_Name' is not allowed; expected lower-case")


def test_files_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "link.txt").symlink_to(outside)
    found = problems(b"name: ok\nframework: sklearn\nfiles: [{src: link.txt, dest: /x}]\n", folder)
    assert "leads outside the recipe's folder" in "\n".join(found)


def test_files_inside_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print(1)\n")
    r = parse_recipe(
        b"name: ok\nframework: sklearn\nfiles: [{src: train.py, dest: /workspace/train.py}]\n",
        tmp_path / "r.yaml",
    )
    assert r.files[0].src == "train.py"


def test_missing_file_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "nope.yaml")
    assert "file not found" in info.value.details[0]
