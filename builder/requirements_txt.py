"""pip requirements files as a recipe's `requirements:`.

Read the way pip reads them (pip/_internal/req/req_file.py), so that mlbuild and the user's own
pip see the same lines: split with str.splitlines(), a trailing backslash joins the next line,
`#` at the start of a line or after whitespace starts a comment.

Kept: requirements with their environment markers and `--hash=sha256:...`; `-r FILE` and
`-c FILE` includes (relative to the including file, inside the recipe's folder, no cycles).
Refused, each with its reason: options that choose where packages come from (indexes,
find-links, trusted hosts), editable installs, URLs and local paths, other pip options, and
`${VAR}` (pip would expand it inside the build, where the recipe cannot see its value).

mlbuild never hands the file itself to pip: each accepted requirement is written again, in
normalised form, into the build's own requirements files.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

from builder.pep508 import requirement_problem
from builder.projectfiles import MAX_BYTES, MAX_ENTRIES, Entry, ProjectFileError, read_inside

COMMENT_RE = re.compile(r"(^|\s+)#.*$")  # pip's own
HASH_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")
INCLUDE_PATH_RE = re.compile(r"[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*")
INCLUDES = {"-r": False, "--requirement": False, "-c": True, "--constraint": True}  # option -> constraint?
INDEX_OPTIONS = (
    "-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links", "--trusted-host",
)  # fmt: skip
EDITABLE = ("-e", "--editable")
ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
MAX_FILES = 64  # files read for one recipe, includes counted each time they are read


def read_requirements(folder: Path, rel: str) -> tuple[Entry, ...]:
    reader = _Reader(folder)
    reader.read(rel, (), constraint=False)
    reader.check_hashes()
    if len(reader.entries) > MAX_ENTRIES:
        reader.problems.append(f"{rel} and its includes hold {len(reader.entries)} requirements; at most {MAX_ENTRIES}")
    if reader.problems:
        raise ProjectFileError(reader.problems)
    return tuple(reader.entries)


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each non-empty line after joining and comment removal."""
    joined: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.endswith("\\") and not COMMENT_RE.match(line):
            if not joined:
                first = number
            joined.append(line.strip("\\"))
            continue
        if COMMENT_RE.match(line):
            line = " " + line  # a comment ends a continued line; it is removed below
        if joined:
            yield first, _strip("".join([*joined, line]))
            joined = []
        else:
            yield number, _strip(line)
    if joined:
        yield first, _strip("".join(joined))


def _strip(line: str) -> str:
    return COMMENT_RE.sub("", line).strip()


def split_option(line: str) -> tuple[str, str]:
    """`-r a.txt`, `-ra.txt`, `--requirement=a.txt`, `--requirement a.txt` -> ("-r"/..., "a.txt")."""
    first, _, rest = line.partition(" ")
    rest = rest.strip()
    if first.startswith("--"):
        name, eq, value = first.partition("=")
        return name, (value + (" " + rest if rest else "")).strip() if eq else rest
    return first[:2], (first[2:] + (" " + rest if rest else "")).strip()


class _Reader:
    def __init__(self, folder: Path):
        self.folder = folder
        self.root = folder.resolve()
        self.problems: list[str] = []
        self.entries: list[Entry] = []
        self.files_read = 0
        self.require_hashes_at: str | None = None

    def read(self, rel: str, chain: tuple[Path, ...], constraint: bool) -> None:
        self.files_read += 1
        if self.files_read > MAX_FILES:
            if self.files_read == MAX_FILES + 1:
                self.problems.append(f"{rel}: more than {MAX_FILES} requirement files are included")
            return
        try:
            text = read_inside(self.folder, rel, MAX_BYTES["requirements"])
        except ProjectFileError as exc:
            self.problems += exc.problems
            return
        here = (*chain, (self.folder / rel).resolve())
        for number, line in logical_lines(text):
            if line:
                self.line(rel, number, line, here, constraint)

    def line(self, rel: str, number: int, line: str, chain: tuple[Path, ...], constraint: bool) -> None:
        where = f"{rel} line {number}"
        if "${" in line:
            self.problems.append(
                f"{where}: {line!r}: environment variables are not allowed (pip would expand them in "
                "the build, where the recipe cannot see their value)"
            )
            return
        if line.startswith("-"):
            self.option(rel, where, line, chain, constraint)
            return
        self.requirement(where, line, constraint)

    def option(self, rel: str, where: str, line: str, chain: tuple[Path, ...], constraint: bool) -> None:
        name, value = split_option(line)
        if name in INCLUDES:
            self.include(rel, where, value, chain, constraint or INCLUDES[name])
        elif name in INDEX_OPTIONS:
            self.problems.append(
                f"{where}: {name} would choose where packages come from; the site's pip configuration "
                "and mlbuild's options set indexes, and a recipe may not redirect them (remove the line)"
            )
        elif name in EDITABLE:
            self.problems.append(
                f"{where}: editable installs ({line!r}) are not supported: an image installs released "
                "packages; copy your own code with files: instead"
            )
        elif name == "--require-hashes":
            self.require_hashes_at = where
        else:
            self.problems.append(
                f"{where}: pip option {name!r} is not supported here; allowed: -r/--requirement FILE, "
                "-c/--constraint FILE, --require-hashes, and --hash=sha256:... after a requirement"
            )

    def include(self, rel: str, where: str, value: str, chain: tuple[Path, ...], constraint: bool) -> None:
        if not INCLUDE_PATH_RE.fullmatch(value):
            self.problems.append(
                f"{where}: {value!r} is not allowed; expected a relative path of letters, digits and . _ + - /"
            )
            return
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), value))
        if target == ".." or target.startswith("../"):
            self.problems.append(f"{where}: {value!r} leads outside the recipe's folder")
            return
        resolved = (self.folder / target).resolve()
        if resolved in chain:
            names = [str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p) for p in chain]
            loop = " -> ".join([*names, target])
            self.problems.append(f"{where}: including {value!r} makes a cycle ({loop})")
            return
        self.read(target, chain, constraint)

    def requirement(self, where: str, line: str, constraint: bool) -> None:
        text, options = _break_args_options(line)
        hashes = self.hashes(where, options)
        if hashes is None:
            return
        if "://" in text or text.startswith((".", "/", "~")) or "\\" in text or text.lower().endswith(ARCHIVE_SUFFIXES):
            self.problems.append(
                f"{where}: {text!r}: URLs and local paths are not supported as requirements (they "
                "bypass the index the site configures); publish the package, or use a wheelhouse"
            )
            return
        req, why = requirement_problem(text)
        if req is None:
            self.problems.append(f"{where}: {why}")
            return
        if constraint and (req.extras or hashes):
            self.problems.append(f"{where}: {text!r}: a constraint may carry neither extras nor hashes")
            return
        if hashes:
            pins = list(req.specifier)
            if len(pins) != 1 or pins[0].operator not in ("==", "===") or pins[0].version.endswith(".*"):
                self.problems.append(
                    f"{where}: {text!r} has hashes but no exact pin; pip's hash-checking mode needs name==version"
                )
                return
        entry = Entry(str(req), where, tuple(sorted(set(hashes))), constraint)
        if not any(
            (e.requirement, e.hashes, e.constraint) == (entry.requirement, entry.hashes, entry.constraint)
            for e in self.entries
        ):
            self.entries.append(entry)  # the same line through two includes counts once

    def hashes(self, where: str, options: str) -> list[str] | None:
        tokens = options.split()
        out: list[str] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.startswith("--hash="):
                value = token.removeprefix("--hash=")
            elif token == "--hash" and i + 1 < len(tokens):
                i += 1
                value = tokens[i]
            else:
                self.problems.append(
                    f"{where}: pip option {token!r} after a requirement is not supported; only --hash=sha256:..."
                )
                return None
            m = HASH_RE.fullmatch(value)
            if not m:
                self.problems.append(f"{where}: {value!r} is not a sha256 hash; expected --hash=sha256:<64 hex digits>")
                return None
            out.append("sha256:" + m.group(1).lower())
            i += 1
        return out

    def check_hashes(self) -> None:
        """pip's hash-checking mode is all or nothing: once one requirement has a hash, every
        requirement needs one (constraints excepted)."""
        reqs = [e for e in self.entries if not e.constraint]
        hashed = next((e for e in reqs if e.hashes), None)
        reason = f"{hashed.source} has one" if hashed else f"{self.require_hashes_at} asks --require-hashes"
        if not hashed and not self.require_hashes_at:
            return
        for e in [e for e in reqs if not e.hashes][:5]:
            self.problems.append(
                f"{e.source}: {e.requirement!r} has no --hash, but {reason}: pip's hash-checking mode "
                "needs a hash on every requirement (pip-compile --generate-hashes writes them all)"
            )


def _break_args_options(line: str) -> tuple[str, str]:
    """pip's split of a requirement line: the options start at the first word beginning with -."""
    tokens = line.split(" ")
    for i, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(tokens[:i]).strip(), " ".join(tokens[i:])
    return line.strip(), ""
