"""Image references: the one parser of `registry:5000/team/name:tag@sha256:...`."""

from __future__ import annotations

from dataclasses import dataclass

from builder.errors import UsageError

DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. `name` is as written; `registry` + `path` as the API needs."""

    name: str  # e.g. 127.0.0.1:5000/team/x, or mlbuild/x (Docker Hub)
    registry: str  # host[:port]; docker.io when the name has none
    path: str  # the repository inside the registry: team/x, library/ubuntu
    tag: str | None = None
    digest: str | None = None

    @property
    def explicit_registry(self) -> bool:
        return self.name.split("/", 1)[0] == self.registry

    @property
    def tag_or_latest(self) -> str:
        """The tag a tagless name means, as Docker reads it."""
        return self.tag or "latest"


def parse_reference(ref: str) -> Reference:
    """Docker's rules: the first part is a registry when it has a '.' or ':' or is localhost."""
    name, _, digest = ref.partition("@")
    tag = None
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, name if "/" in name else f"library/{name}"
    if not path or path != path.lower():
        raise UsageError(f"{ref!r} is not a valid image reference", hint="e.g. host:5000/team/name:tag")
    return Reference(name, registry, path, tag, digest or None)


def split_tag(ref: str) -> tuple[str, str]:
    """registry:5000/team/name:tag -> (registry:5000/team/name, tag); no tag -> latest; a
    digest is dropped (what `docker tag` takes)."""
    parsed = parse_reference(ref)
    return parsed.name, parsed.tag_or_latest
