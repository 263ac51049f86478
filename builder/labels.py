"""Every image label mlbuild writes or reads, in one place.

An image says what it is through its labels: later steps (smoke, push, pull, inspect, verify)
read them back instead of deciding again, so a label's name is part of the image format.
"""

from __future__ import annotations

# -- mlbuild's own -------------------------------------------------------------------------------
SPEC_LABEL = "org.mlbuild.spec"  # the resolved spec, canonical JSON (builder.spec)
CONTENT_LABEL = "org.mlbuild.content"  # the immutable content tag, spec-<hash>
BASE_ID_LABEL = "org.mlbuild.base.id"  # the image ID of the base the image was built on
BUILDER_LABEL = "org.mlbuild.builder"  # buildkit or classic: a lock gives identical bytes per builder
BASE_SUITE_LABEL = "org.mlbuild.base.suite"  # a base made by `mlbuild base bootstrap`: its Debian suite
BASE_MIRROR_LABEL = "org.mlbuild.base.mirror"  # ... and the archive it came from (credentials redacted)
LOCK_LABEL = "org.mlbuild.lock"  # sha256 of the lock file's bytes (locked builds)
SBOM_LABEL = "org.mlbuild.sbom"  # "<file name> sha256:<digest>" of the SBOM beside the lock
TEMPORARY_LABEL = "org.mlbuild.temporary"  # containers and images removed after use ("1")

# -- OCI image annotations (github.com/opencontainers/image-spec, annotations.md) ----------------
OCI_TITLE = "org.opencontainers.image.title"
OCI_VERSION = "org.opencontainers.image.version"
OCI_DESCRIPTION = "org.opencontainers.image.description"
OCI_CREATED = "org.opencontainers.image.created"
OCI_REVISION = "org.opencontainers.image.revision"
OCI_SOURCE = "org.opencontainers.image.source"
OCI_BASE_NAME = "org.opencontainers.image.base.name"
OCI_BASE_DIGEST = "org.opencontainers.image.base.digest"
