"""A tar archive streamed through a pipe: the engine reads it while a thread writes it, so no
second copy of a root file system or an image's layers lands on disk."""

from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Callable, Iterator

from builder.errors import EngineError

CHUNK = 1 << 20


def tar_stream(fill: Callable[[tarfile.TarFile], None], what: str) -> Iterator[bytes]:
    """Chunks of the tar that `fill` writes; EngineError naming `what` if writing failed."""
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with (
                os.fdopen(write_fd, "wb") as fh,
                tarfile.open(fileobj=fh, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                fill(tar)
        except BaseException as exc:  # reported by the reading side
            errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as reader:
        while block := reader.read(CHUNK):
            yield block
    thread.join()
    if errors:
        raise EngineError(f"could not pack {what}: {errors[0]}")
