"""Image references: builder/refs.py, the one parser."""

from __future__ import annotations

import pytest

from builder.errors import UsageError
from builder.refs import parse_reference, split_tag


@pytest.mark.parametrize(
    ("ref", "registry", "path", "tag", "digest"),
    [
        ("ubuntu", "docker.io", "library/ubuntu", None, None),
        ("mlbuild/sklearn-cpu:latest", "docker.io", "mlbuild/sklearn-cpu", "latest", None),
        ("127.0.0.1:5000/team/x:spec-1", "127.0.0.1:5000", "team/x", "spec-1", None),
        ("localhost/x", "localhost", "x", None, None),
        ("reg.example.com/a/b/c@sha256:abc", "reg.example.com", "a/b/c", None, "sha256:abc"),
    ],
)
def test_parse_reference(ref: str, registry: str, path: str, tag: str | None, digest: str | None) -> None:
    r = parse_reference(ref)
    assert (r.registry, r.path, r.tag, r.digest) == (registry, path, tag, digest)
    assert r.explicit_registry == (registry != "docker.io")


def test_parse_reference_rejects_upper_case() -> None:
    with pytest.raises(UsageError):
        parse_reference("reg.example.com/Team/x")


def test_split_tag_is_what_docker_tag_takes() -> None:
    assert split_tag("127.0.0.1:5000/team/x:v1") == ("127.0.0.1:5000/team/x", "v1")
    assert split_tag("127.0.0.1:5000/team/x") == ("127.0.0.1:5000/team/x", "latest")
    assert split_tag("team/x:v1@sha256:abc") == ("team/x", "v1")
