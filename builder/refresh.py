"""`mlbuild matrix refresh`: bring the PyPI-derived parts of the framework data up to date.

What the package index can tell, and this module re-reads:
- the release list (final releases with a Linux x86_64 wheel, from the oldest release on file);
- the Python versions of each release (the CPython tags of those wheels' filenames);
- for frameworks whose PyPI wheel is one of several builds (torch), which build it is: the CUDA
  runtime its METADATA requires. METADATA comes from the PEP 658 `.metadata` file when the index
  offers one, otherwise from the wheel itself through HTTP range reads (a few small requests,
  only for releases that are new on the index).

What it cannot tell (CUDA variants on other indexes, cuDNN, GPU architectures, companions) is
kept from the data for existing releases. A new release copies the variants of the nearest
older release on file, marked `# carried from X`: a patch release keeps its minor's builds,
so this is right in practice and leaves a human a block to edit rather than to write. When that
release is the first of a new minor and the framework has GPU builds, the copy is only a guess,
so the release also gets `todo:`; check_matrix refuses data with a `todo:` until a human
checks the variants against the upstream release notes and deletes the line.

Writing edits the YAML text line by line (release blocks, `python:` and `default_variant:`
lines, the `checked:` date of the sources it re-read) instead of dumping parsed data, so every
comment and source note written by hand stays where it was. The new text is parsed and compared
with the intended values before it atomically replaces the file.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.errors import MlbuildError, UsageError
from builder.matrix import data_dir, listing_key, version_key
from builder.settings import load_settings, redact

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
# source entries whose `checked:` date a refresh renews: the facts it re-derived
REFRESHED_SOURCES = ("release list", "default variant")
Fetch = Callable[[str, dict[str, str]], "Response"]


class RefreshError(MlbuildError):
    """The index could not be read, or its answer cannot be used."""


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    content_range: str = ""  # of a 206 answer: "bytes 0-99/12345"


@dataclass(frozen=True)
class IndexRelease:
    """One release as the index shows it."""

    version: str
    pythons: tuple[str, ...]  # every CPython minor with a Linux x86_64 wheel
    wheel_url: str | None = None  # one Linux x86_64 wheel, for METADATA
    metadata_url: str | None = None  # its PEP 658 file, when the index offers one


@dataclass(frozen=True)
class Change:
    version: str
    old_pythons: tuple[str, ...]
    new_pythons: tuple[str, ...]
    old_default: str | None = None
    new_default: str | None = None


@dataclass(frozen=True)
class Added:
    version: str
    pythons: tuple[str, ...]
    carried_from: str | None
    default_variant: str | None
    todo: str | None


@dataclass
class FrameworkDiff:
    framework: str
    path: Path
    project: str
    added: list[Added] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # on file, not on the index: kept
    changed: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    old_text: str = ""
    new_text: str = ""

    @property
    def has_changes(self) -> bool:
        return self.new_text != self.old_text

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "file": str(self.path),
            "project": self.project,
            "added": [a.__dict__ for a in self.added],
            "removed": self.removed,
            "changed": [c.__dict__ for c in self.changed],
            "notes": self.notes,
            "writes": self.has_changes,
        }

    def lines(self) -> list[str]:
        """A readable diff: what a --write would change, and what it keeps."""
        out = [f"{self.framework} ({self.project}, {self.path.name}):"]
        for a in sorted(self.added, key=lambda a: Version(a.version), reverse=True):
            extra = f", default {a.default_variant}" if a.default_variant else ""
            carried = f"; builds carried from {a.carried_from}" if a.carried_from else ""
            todo = "; NEEDS REVIEW: " + a.todo if a.todo else ""
            out.append(f"  + {a.version}  Python {_list(a.pythons)}{extra}{carried}{todo}")
        for c in self.changed:
            parts = []
            if c.old_pythons != c.new_pythons:
                gone = [p for p in c.old_pythons if p not in c.new_pythons]
                new = [p for p in c.new_pythons if p not in c.old_pythons]
                parts.append(
                    f"Python {_list(c.old_pythons)} -> {_list(c.new_pythons)}"
                    + (f" (+{', +'.join(new)})" if new else "")
                    + (f" (-{', -'.join(gone)})" if gone else "")
                )
            if c.old_default != c.new_default:
                parts.append(f"default variant {c.old_default} -> {c.new_default}")
            out.append(f"  ~ {c.version}  " + "; ".join(parts))
        for v in self.removed:
            out.append(f"  - {v}  not on the index (kept: delete it by hand if it was yanked)")
        out.extend(f"  note: {n}" for n in self.notes)
        if len(out) == 1:
            out.append("  up to date")
        return out


# ---------------------------------------------------------------- the index


def default_index_url(option: str | None = None) -> str:
    """The index this machine's pip uses: the option, mlbuild's settings or $PIP_INDEX_URL,
    pip's configuration files (`pip config list`), and last pip's own built-in default."""
    settings = load_settings(index_url=option)
    if settings.index_url:
        return settings.index_url
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        for line in listed.stdout.splitlines():
            key, _, value = line.partition("=")
            if key.split(".")[-1] == "index-url" and value.strip("'\" "):
                return value.strip("'\" ")
    except (OSError, subprocess.SubprocessError):
        pass
    try:  # what pip would use with no configuration at all
        from pip._internal.models.index import PyPI

        return str(PyPI.simple_url)
    except ImportError:
        raise UsageError(
            "no package index is configured on this machine",
            hint="give --index-url URL, or set PIP_INDEX_URL",
        ) from None


def http_fetch(ca_bundle: Path | None = None, timeout: float = 60) -> Fetch:
    """A fetch function over requests (proxies and CA from the environment or settings)."""
    import requests  # only refresh needs it: keep it out of every other command's start-up

    session = requests.Session()
    if ca_bundle:
        session.verify = str(ca_bundle)

    def fetch(url: str, headers: dict[str, str]) -> Response:
        try:
            r = session.get(url, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            raise RefreshError(f"cannot reach {redact(url)}: {exc.__class__.__name__}") from None
        return Response(
            r.status_code,
            r.headers.get("content-type", ""),
            r.content,
            r.headers.get("content-range", ""),
        )

    return fetch


class Index:
    """The PEP 691 JSON simple API of one index."""

    def __init__(self, url: str, fetch: Fetch):
        self.url = url.rstrip("/") + "/"
        self.fetch = fetch

    def project(self, name: str) -> tuple[str, dict[str, Any]]:
        page = urljoin(self.url, canonicalize_name(name) + "/")
        r = self.fetch(page, {"Accept": SIMPLE_JSON})
        if r.status == 404:
            raise RefreshError(f"{name} is not on the index {redact(self.url)}")
        if r.status != 200:
            raise RefreshError(f"{redact(page)} answered HTTP {r.status}")
        if not r.content_type.split(";")[0].strip().startswith("application/vnd.pypi.simple.v1+"):
            raise RefreshError(
                f"{redact(self.url)} does not serve the JSON simple API (PEP 691) for {name}",
                details=[f"content type: {r.content_type or 'none'}"],
                hint="use an index that answers Accept: " + SIMPLE_JSON,
            )
        try:
            return page, json.loads(r.body)
        except ValueError:
            raise RefreshError(f"{redact(page)} is not valid JSON") from None

    def releases(self, name: str) -> dict[str, IndexRelease]:
        """Final releases with at least one Linux x86_64 CPython wheel, by version."""
        page, doc = self.project(name)
        found: dict[str, dict[str, Any]] = {}
        for f in doc.get("files", []):
            if f.get("yanked"):
                continue
            parsed = parse_wheel_name(str(f.get("filename", "")))
            if parsed is None:
                continue
            version, pythons, linux = parsed
            if not linux or not pythons:
                continue
            entry = found.setdefault(version, {"pythons": set(), "wheels": []})
            entry["pythons"].update(pythons)
            url = urljoin(page, str(f["url"]))
            meta = f.get("core-metadata") or f.get("data-dist-info-metadata")
            entry["wheels"].append((max(pythons, key=version_key), url, url + ".metadata" if meta else None))
        out = {}
        for version, entry in found.items():
            # METADATA of the newest Python's wheel: the same Requires-Dist for every Python
            _, url, meta = max(entry["wheels"], key=lambda w: version_key(w[0]))
            out[version] = IndexRelease(version, tuple(sorted(entry["pythons"], key=version_key)), url, meta)
        return out

    def metadata(self, release: IndexRelease, allow_range: bool) -> str | None:
        """The wheel's METADATA text: PEP 658 first, then (if allowed) HTTP range reads."""
        if release.metadata_url:
            r = self.fetch(release.metadata_url, {})
            if r.status == 200:
                return r.body.decode("utf-8", "replace")
        if allow_range and release.wheel_url:
            return _remote_wheel_metadata(release.wheel_url, self.fetch)
        return None


_WHEEL_RE = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-(?P<build>\d[^-]*))?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def parse_wheel_name(filename: str) -> tuple[str, set[str], bool] | None:
    """(version, CPython minors, is Linux x86_64) of a wheel filename; None for anything else.

    cp312 -> 3.12; an abi3 wheel (cp39-abi3) counts for its own minor only, since the index
    cannot say how far up it works (requires-python or the project's notes must).
    """
    m = _WHEEL_RE.match(filename)
    if not m:
        return None
    try:
        version = Version(m["version"])
    except InvalidVersion:
        return None
    if version.is_prerelease or version.is_devrelease or version.local:
        return None
    pythons = set()
    for tag in m["py"].split("."):
        t = re.fullmatch(r"cp(\d)(\d+)", tag)
        if t:
            pythons.add(f"{t[1]}.{t[2]}")
    linux = any(p.endswith("x86_64") and ("linux" in p) for p in m["plat"].split("."))
    return str(version), pythons, linux


class _RangeFile(io.RawIOBase):
    """A read-only file over HTTP range requests, so that zipfile can read one member of a
    wheel (torch's is ~1 GB) with a handful of small requests."""

    def __init__(self, url: str, fetch: Fetch):
        self.url, self.fetch, self.pos = url, fetch, 0
        tail = fetch(url, {"Range": "bytes=-1"})
        total = re.search(r"/(\d+)\s*$", tail.content_range)
        if tail.status != 206 or total is None:
            raise OSError(f"{redact(url)}: the server does not answer range requests")
        self.size = int(total[1])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: 0, 1: self.pos, 2: self.size}[whence] + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.size:
            return 0
        end = min(self.pos + len(buffer), self.size) - 1
        r = self.fetch(self.url, {"Range": f"bytes={self.pos}-{end}"})
        if r.status != 206:
            raise OSError(f"{redact(self.url)}: range request answered HTTP {r.status}")
        data = r.body[: len(buffer)]
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def _remote_wheel_metadata(url: str, fetch: Fetch) -> str | None:
    """METADATA of a remote wheel: the zip's end record, its directory and one member."""
    try:
        raw = _RangeFile(url, fetch)
        with zipfile.ZipFile(io.BufferedReader(raw, 1 << 16)) as wheel:
            names = [n for n in wheel.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            return wheel.read(names[0]).decode("utf-8", "replace") if names else None
    except (zipfile.BadZipFile, OSError, RefreshError):
        return None


def build_from_metadata(text: str) -> tuple[str | None, str | None]:
    """(variant, cuDNN major.minor) that a framework wheel's Requires-Dist says it is.

    nvidia-cuda-runtime-cu12==12.4.127 -> cu124; cuda-toolkit[...]==13.2.2 -> cu132;
    nvidia-cudnn-cu13==9.26.0.51 -> 9.26. No CUDA requirement -> (None, None): a build that
    bundles CUDA (torch 1.12's cu102) looks the same as a CPU one, so the caller keeps the data.
    """
    cuda: str | None = None
    cudnn: str | None = None
    for value in Parser().parsestr(text).get_all("Requires-Dist") or []:
        try:
            req = Requirement(value)
        except InvalidRequirement:
            continue
        if req.marker and "extra" in str(req.marker):
            continue
        name = canonicalize_name(req.name)
        pins = [s.version for s in req.specifier if s.operator in ("==", "~=", "===")]
        if not pins:
            continue
        minor = ".".join(pins[0].split(".")[:2])
        if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?|cuda-toolkit", name):
            cuda = minor
        elif re.fullmatch(r"nvidia-cudnn(-cu\d+)?", name):
            cudnn = minor
    return ("cu" + cuda.replace(".", "") if cuda else None), cudnn


# ---------------------------------------------------------------- the data text


_RELEASE_RE = re.compile(r'^  - version:\s*"?(?P<v>[^"\s#]+)"?')


@dataclass(frozen=True)
class _Block:
    version: str
    start: int  # index of the `  - version:` line
    end: int  # exclusive; comment lines just above the next block belong to that block
    head: int  # first line of the comments just above `start`


def _blocks(lines: list[str]) -> list[_Block]:
    top = next((i for i, ln in enumerate(lines) if ln.startswith("releases:")), None)
    if top is None:
        return []
    starts = [i for i in range(top + 1, len(lines)) if _RELEASE_RE.match(lines[i])]
    heads = []
    for s in starts:
        h = s
        while h - 1 > top and lines[h - 1].startswith("  #"):
            h -= 1
        heads.append(h)
    blocks = []
    for n, s in enumerate(starts):
        end = heads[n + 1] if n + 1 < len(starts) else _section_end(lines, s)
        m = _RELEASE_RE.match(lines[s])
        assert m
        blocks.append(_Block(m["v"], s, end, heads[n]))
    return blocks


def _section_end(lines: list[str], start: int) -> int:
    for i in range(start + 1, len(lines)):
        if lines[i] and not lines[i].startswith((" ", "#")):
            return i
    return len(lines)


def _python_line(pythons: tuple[str, ...], extra: tuple[str, ...], indent: str = "    ") -> str:
    line = f"{indent}python: [{', '.join(json.dumps(p) for p in pythons)}]"
    if extra:
        line += f"  # wheels also for {', '.join(extra)} (no base image in bases.yaml)"
    return line


def _set_line(lines: list[str], block: _Block, key: str, value: str) -> bool:
    """Replace `    key: ...` in the block (keeping a trailing comment); False if absent."""
    pattern = re.compile(rf"^    {key}:\s*(?P<value>[^#\n]*?)\s*(?P<comment>#.*)?$")
    for i in range(block.start, block.end):
        m = pattern.match(lines[i])
        if m:
            comment = f"  {m['comment']}" if m["comment"] else ""
            lines[i] = f"    {key}: {value}{comment}"
            return True
    return False


def _renew_checked(lines: list[str], today: str) -> None:
    """Set `checked:` of the source entries whose facts a refresh re-derives."""
    in_sources, current = False, ""
    for i, line in enumerate(lines):
        if line.startswith("sources:"):
            in_sources = True
            continue
        if in_sources and line and not line.startswith((" ", "#")):
            break
        if not in_sources:
            continue
        what = re.match(r'^  - (?:\{)?what:\s*"?([^"]*)', line)
        if what:
            current = what[1]
        if current.lower().startswith(REFRESHED_SOURCES):
            lines[i] = re.sub(r'(checked:\s*)"[^"]*"', rf'\g<1>"{today}"', line)


# ---------------------------------------------------------------- the refresh


def refresh_framework(
    framework: str,
    index: Index,
    folder: Path | None = None,
    today: str | None = None,
    allow_range: bool = True,
) -> FrameworkDiff:
    """Compare one framework's data file with the index; the diff holds the new text."""
    folder = folder or data_dir()
    paths = framework_files(folder)
    if framework not in paths:
        raise UsageError(
            f"no data file in {folder} declares framework {framework!r}",
            details=[f"frameworks there: {', '.join(paths) or 'none'}"],
            hint="check --data-dir and --framework",
        )
    path = paths[framework]
    text = path.read_text()
    doc = yaml.safe_load(text) or {}
    bases = yaml.safe_load((folder / "bases.yaml").read_text()) or {}
    known = {str(b["python"]) for b in bases.get("python", [])}
    project = str(doc["distribution"])
    diff = FrameworkDiff(framework, path, project, old_text=text)
    on_file = {str(r["version"]): r for r in doc.get("releases", [])}
    floor = min((Version(v) for v in on_file), default=Version("0"))

    index_releases = index.releases(project)
    # a pure-Python framework wheel takes its Pythons from its compiled half (`pythons_from:`)
    python_source = _opt(doc.get("pythons_from"))
    python_source = None if python_source in (None, project) else python_source
    helper = index.releases(python_source) if python_source else {}
    wants_default = any(r.get("default_variant") for r in on_file.values())

    def pythons_of(version: str) -> tuple[str, ...] | None:
        if not python_source:
            rel = index_releases.get(version)
            return rel.pythons if rel else None
        # release X runs on the helper of the same version, or the newest older one
        older = [v for v in helper if Version(v) <= Version(version)]
        return helper[max(older, key=Version)].pythons if older else None

    lines = text.split("\n")
    today = today or dt.date.today().isoformat()
    # a pure-Python framework's releases are its own, its Pythons those of `pythons_from`
    candidates = sorted(
        (v for v in _all_versions(index, project, index_releases, python_source) if Version(v) >= floor),
        key=Version,
        reverse=True,
    )
    on_index = set(candidates)
    for version in sorted(on_file, key=Version, reverse=True):
        if version not in on_index and Version(version) >= floor:
            diff.removed.append(version)

    # updates to releases on file
    for block in _blocks(lines):
        rel = on_file.get(block.version)
        all_py = pythons_of(block.version)
        if rel is None or all_py is None:
            continue
        old = tuple(str(p) for p in rel.get("python", []))
        new = tuple(p for p in all_py if p in known)
        extra = tuple(p for p in all_py if p not in known and version_key(p) >= (3, 9))
        change = Change(block.version, old, new)
        if new and set(new) != set(old):
            for i in range(block.start, block.end):
                if lines[i].startswith("    python:"):
                    lines[i] = _python_line(new, extra)
                    break
        else:
            change = Change(block.version, old, old)
        if wants_default:
            ir = index_releases.get(block.version)
            meta = index.metadata(ir, allow_range=False) if ir else None  # PEP 658 only
            if meta:
                variant, on_file_cudnn = build_from_metadata(meta)
                old_default = _opt(rel.get("default_variant"))
                if variant and variant != old_default:
                    _set_line(lines, block, "default_variant", variant)
                    change = Change(block.version, change.old_pythons, change.new_pythons, old_default, variant)
                _note_cudnn(diff, rel, variant or old_default, on_file_cudnn)
        if change.old_pythons != change.new_pythons or change.old_default != change.new_default:
            diff.changed.append(change)

    # new releases, oldest first, each inserted at its place in the newest-first order
    original = set(on_file)
    for version in sorted(candidates, key=Version):
        if version in on_file:
            continue
        all_py = pythons_of(version) or ()
        pythons = tuple(p for p in all_py if p in known)
        if not pythons:
            diff.notes.append(f"{version}: skipped, no wheel for a Python bases.yaml has")
            continue
        extra = tuple(p for p in all_py if p not in known and version_key(p) >= (3, 9))
        blocks = _blocks(lines)
        # carry only from releases a human wrote, never from one this refresh just copied
        source = _carry_source([b for b in blocks if b.version in original], version)
        default: str | None = None
        cudnn: str | None = None
        if wants_default and index_releases.get(version):
            meta = index.metadata(index_releases[version], allow_range=allow_range)
            default, cudnn = build_from_metadata(meta) if meta else (None, None)
        src_doc = on_file.get(source.version) if source else None
        if default is None and src_doc and src_doc.get("default_variant"):
            default = str(src_doc["default_variant"])
        gpu = bool(src_doc) and any(v.get("cuda") or v.get("rocm") for v in (src_doc or {}).get("variants", []))
        same_minor = source is not None and Version(source.version).release[:2] == Version(version).release[:2]
        todo = None
        if source is None:
            todo = "no earlier release to carry builds from: add its variants"
        elif gpu and not same_minor:
            todo = (
                f"first {_minor(version)} release: variants, cuDNN and archs carried from "
                f"{source.version}; check them against the upstream release notes"
            )
        block_text = _new_block(lines, source, version, pythons, extra, default, todo, doc, today)
        at = _insert_at(blocks, version, lines)
        lines[at:at] = block_text
        on_file[version] = {"version": version, "python": list(pythons), "default_variant": default}
        if src_doc:
            on_file[version]["variants"] = src_doc.get("variants", [])
        diff.added.append(Added(version, pythons, source.version if source else None, default, todo))
        if default and src_doc and default not in {str(v["name"]) for v in src_doc.get("variants", [])}:
            diff.notes.append(
                f"{version}: PyPI's wheel is the {default} build, which "
                f"{source.version if source else '?'} "
                "has no variant for: add it (check_matrix refuses the data until then)"
            )
        if cudnn:
            _note_cudnn(diff, on_file[version], default, cudnn)

    if diff.added or diff.changed:
        _renew_checked(lines, today)
    diff.new_text = "\n".join(lines)
    if diff.has_changes:
        _verify(diff, pythons_of, known)
    return diff


def _all_versions(
    index: Index, project: str, releases: dict[str, IndexRelease], python_source: str | None
) -> list[str]:
    if not python_source:
        return list(releases)
    # a pure-Python framework wheel (py3-none-any) has no CPython tag: list its versions from
    # any wheel of it instead
    _, doc = index.project(project)
    versions = set()
    for f in doc.get("files", []):
        m = _WHEEL_RE.match(str(f.get("filename", "")))
        if m and not f.get("yanked"):
            try:
                v = Version(m["version"])
            except InvalidVersion:
                continue
            if not (v.is_prerelease or v.is_devrelease or v.local):
                versions.add(str(v))
    return list(versions)


def _note_cudnn(diff: FrameworkDiff, rel: dict[str, Any], variant: str | None, cudnn: str | None) -> None:
    if not (variant and cudnn):
        return
    for v in rel.get("variants") or []:
        if str(v.get("name")) == variant and v.get("cudnn") and str(v["cudnn"]) != cudnn:
            diff.notes.append(
                f"{rel['version']} {variant}: PyPI's wheel requires cuDNN {cudnn}, the data says "
                f"{v['cudnn']} (not changed: check which is right)"
            )


def _carry_source(blocks: list[_Block], version: str) -> _Block | None:
    """The newest release on file older than `version` (same minor first, if any)."""
    older = [b for b in blocks if Version(b.version) < Version(version)]
    if not older:
        return None
    same = [b for b in older if Version(b.version).release[:2] == Version(version).release[:2]]
    return max(same or older, key=lambda b: Version(b.version))


def _insert_at(blocks: list[_Block], version: str, lines: list[str]) -> int:
    """Before the first (newest-first) release older than `version`, keeping the order."""
    for b in blocks:
        if Version(b.version) < Version(version):
            return b.head
    return blocks[-1].end if blocks else len(lines)


def _new_block(
    lines: list[str], source: _Block | None, version: str, pythons: tuple[str, ...],
    extra: tuple[str, ...], default: str | None, todo: str | None, doc: dict[str, Any], today: str,
) -> list[str]:  # fmt: skip
    note = f"; builds carried from {source.version}" if source else ""
    out = [f"  # added by `mlbuild matrix refresh` on {today}{note}"]
    out.append(f'  - version: "{version}"' + (f"  # carried from {source.version}" if source else ""))
    out.append(_python_line(pythons, extra))
    if default:
        out.append(f"    default_variant: {default}")
    if todo:
        out.append(f"    todo: {json.dumps(todo)}")
    if doc.get("companions"):
        names = "/".join(str(c) for c in doc["companions"])
        out.append(f"    companions: {{}}  # not known yet: pair them from {names} metadata")
    if source:
        body = lines[source.start + 1 : source.end]
        i = next((n for n, ln in enumerate(body) if ln.startswith("    variants:")), None)
        out.extend(body[i:] if i is not None else ["    variants: []"])
        while out and not out[-1].strip():
            out.pop()
    else:
        out.append("    variants: []")
    return out


def _verify(diff: FrameworkDiff, pythons_of: Callable[[str], tuple[str, ...] | None], known: set[str]) -> None:
    """The new text must parse and say exactly what was meant; never write anything else."""
    try:
        doc = yaml.safe_load(diff.new_text) or {}
    except yaml.YAMLError as exc:
        raise RefreshError(f"refresh produced invalid YAML for {diff.path.name}: {exc}") from None
    got = {str(r["version"]): tuple(str(p) for p in r.get("python", [])) for r in doc.get("releases", [])}
    for a in diff.added:
        if got.get(a.version) != a.pythons:
            raise RefreshError(f"refresh could not place {diff.framework} {a.version} in {diff.path.name}")
    for c in diff.changed:
        if set(got.get(c.version, ())) != set(c.new_pythons):
            raise RefreshError(f"refresh could not update {diff.framework} {c.version} in {diff.path.name}")
    versions = [Version(v) for v in got]
    if versions != sorted(versions, reverse=True):
        raise RefreshError(f"refresh would break the newest-first order of {diff.path.name}")


def refresh(
    frameworks: Iterable[str], index: Index, folder: Path | None = None, allow_range: bool = True
) -> list[FrameworkDiff]:
    """Refresh the named frameworks, or every framework of the data folder when none is named."""
    names = tuple(frameworks) or tuple(framework_files(folder or data_dir()))
    return [refresh_framework(fw, index, folder, allow_range=allow_range) for fw in names]


def framework_files(folder: Path) -> dict[str, Path]:
    """framework -> data file, for the files that declare one, as they are now: unchecked, since
    a refresh must also work on data that check_matrix refuses (a release with a `todo:`)."""
    found: dict[str, tuple[int | None, Path]] = {}
    for path in sorted(folder.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        if isinstance(doc, dict) and doc.get("framework"):
            found[str(doc["framework"])] = (doc.get("order"), path)
    return {name: path for name, (_, path) in sorted(found.items(), key=lambda kv: listing_key(kv[1][0], kv[0]))}


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _minor(version: str) -> str:
    return ".".join(str(p) for p in Version(version).release[:2])


def _list(pythons: Iterable[str]) -> str:
    return ", ".join(pythons) or "none"
