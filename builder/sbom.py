"""A CycloneDX 1.5 JSON SBOM of an image: its Debian packages (dpkg's status file) and the
Python packages of its virtual environment (the venv's *.dist-info/METADATA).

It is made from the image's final files (read while the image is normalised, or from a saved
image), written beside the lock as `<recipe stem>.sbom.json`, and the image's `org.mlbuild.sbom`
label names it with its sha256. No clock and no random serial number: the same image gives
the same SBOM bytes (the serial number is a UUID derived from the content).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from email.parser import HeaderParser
from typing import Any

from builder.spec import VENV

DPKG_STATUS = "var/lib/dpkg/status"
_DIST_INFO_RE = re.compile(r"^(?:opt/venv|usr/lib/python3[^/]*|usr/local/lib/python3[^/]*)/.*\.dist-info/METADATA$")


@dataclass(frozen=True, order=True)
class Package:
    ecosystem: str  # deb | pypi
    name: str
    version: str
    arch: str = ""

    @property
    def purl(self) -> str:
        if self.ecosystem == "deb":
            return f"pkg:deb/debian/{self.name}@{self.version}" + (f"?arch={self.arch}" if self.arch else "")
        return f"pkg:pypi/{self.name.lower().replace('_', '-')}@{self.version}"


def wanted(path: str) -> bool:
    """The files an SBOM is made from (kept while the image's layers are read)."""
    return path == DPKG_STATUS or (bool(_DIST_INFO_RE.match(path)) and path.startswith(VENV.lstrip("/")))


def parse_dpkg_status(text: str) -> list[Package]:
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") and "installed" in fields.get("Status", "").split():
            out.append(
                Package(
                    "deb",
                    fields["Package"],
                    fields.get("Version", ""),
                    fields.get("Architecture", ""),
                )
            )
    return sorted(out)


def parse_metadata(text: str) -> Package | None:
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    return Package("pypi", str(name), str(version)) if name and version else None


def packages(files: dict[str, bytes]) -> list[Package]:
    out: list[Package] = []
    for path, content in sorted(files.items()):
        if path == DPKG_STATUS:
            out += parse_dpkg_status(content.decode("utf-8", "replace"))
        elif path.endswith(".dist-info/METADATA"):
            pkg = parse_metadata(content.decode("utf-8", "replace"))
            if pkg:
                out.append(pkg)
    return sorted(set(out))


def cyclonedx(pkgs: list[Package], name: str, version: str, created: str) -> dict[str, Any]:
    components = [
        {
            "type": "library",
            "bom-ref": p.purl,
            "name": p.name,
            "version": p.version,
            "purl": p.purl,
            "properties": [{"name": "mlbuild:ecosystem", "value": p.ecosystem}],
        }
        for p in sorted(pkgs)
    ]
    serial = hashlib.sha256(json.dumps(components, sort_keys=True).encode()).hexdigest()
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, serial)}",
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": [{"vendor": "mlbuild", "name": "mlbuild"}],
            "component": {"type": "container", "name": name, "version": version},
        },
        "components": components,
    }


def to_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
