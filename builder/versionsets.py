"""Whether two PEP 440 specifier sets leave some version that satisfies both.

Each set is a union of intervals whose ends are the versions its specifiers name, so where
two sets meet, they meet at or just above one of those versions (or below all of them). The
candidates are therefore: every named version, versions just above it (a further release
component, the next pre-, post- or dev-release), the next release of its last component (the
end of a `==X.*` or `~=X` span), and 0. Pre-releases count: a pin on
one is as much a version as any other.
"""

from __future__ import annotations

import contextlib

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version


def intersects(a: SpecifierSet, b: SpecifierSet) -> bool:
    candidates = {Version("0")}
    for spec in [*a, *b]:
        if spec.operator == "===":
            return True  # arbitrary equality compares text, not versions: leave it to pip
        try:
            version = Version(spec.version.removesuffix(".*"))
        except InvalidVersion:
            return True
        candidates |= _around(version)
    return any(a.contains(v, prereleases=True) and b.contains(v, prereleases=True) for v in candidates)


def _around(v: Version) -> set[Version]:
    release = v.release
    bumped = ".".join(str(p) for p in (*release[:-1], release[-1] + 1))
    out = {v, Version(f"{v.base_version}.0.0.1"), Version(bumped)}
    # the earliest versions of a release: where `==X.*` begins and where `!=X.*` ends
    texts = [f"{v.public}.post1", f"{v.base_version}.dev0", f"{bumped}.dev0"]
    if v.pre:  # `>V` takes no post-release of V: the next pre-release is just above it
        texts.append(f"{v.base_version}{v.pre[0]}{v.pre[1] + 1}")
    if v.post is not None:
        texts.append(f"{v.base_version}.post{v.post + 1}")
    if v.dev is not None:
        texts.append(f"{v.public.rsplit('.dev', 1)[0]}.dev{v.dev + 1}")
    for text in texts:
        with contextlib.suppress(InvalidVersion):
            out.add(Version(text))
    return out
