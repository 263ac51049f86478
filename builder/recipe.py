"""Load and validate a recipe (schema version 1).

Validation collects every problem before raising once, so a user fixes a recipe in one pass.
Every value that later reaches a Dockerfile or a shell is checked here against an allow-list;
render.py then emits it in a form that cannot become another instruction.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from builder import yamlsafe
from builder.errors import Problem, RecipeError, UsageError
from builder.matrix import DATA_DIR_ENV, MatrixDataError, data_dir, framework_names
from builder.pep508 import MAX_TEXT, requirement_problem
from builder.platforms import DEFAULT_PLATFORM, PLATFORMS

if TYPE_CHECKING:
    from builder.projectfiles import ProjectRequirements

GPU_MODES = ("auto", "required", "off")
DEFAULT_USER = "mlbuild"

NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
PYTHON_RE = re.compile(r"^3\.\d{1,2}$")
CUDA_RE = re.compile(r"^\d{1,2}\.\d{1,2}$")
VERSION_PREFIX_RE = re.compile(r"^\d{1,4}(?:\.\d{1,4}){0,3}$")
# Debian policy: lower-case alphanumerics, + - . ; at least two characters; optional =version.
DEB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SAFE_ABS_PATH_RE = re.compile(r"^(/[A-Za-z0-9._+-]+)+/?$|^/$")
SAFE_REL_PATH_RE = re.compile(r"^[A-Za-z0-9._+-]+(/[A-Za-z0-9._+-]+)*$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# A Docker image reference: [host[:port]/]path[:tag][@sha256:digest], lower-case path components.
# The first component is a registry host only when it has a dot or a port, or is localhost.
_HOST = r"(?:(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|localhost)(?::\d{1,5})?/|[A-Za-z0-9-]+:\d{1,5}/)"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
REPOSITORY_RE = re.compile(rf"^{_HOST}?{_PATH}$")
IMAGE_REF_RE = re.compile(rf"^{_HOST}?{_PATH}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$")
DRIVER_RE = re.compile(r"^\d{3,4}(?:\.\d{1,3}){1,2}$")
ARCH_RE = re.compile(r"^sm_\d{2,3}[a-z]?$")
# Reserved because the image's Python environment depends on them (the constraints keep
# derived images' pip installs from replacing the framework: builder.imagesetup).
RESERVED_ENV = {"PATH", "VIRTUAL_ENV", "PYTHONHOME", "PIP_CONSTRAINT", "UV_CONSTRAINT"}
MAX_LIST = 200

TOP_KEYS = (
    "schema", "name", "framework", "framework_version", "python", "cuda", "base_image",
    "framework_from_base", "packages", "system_packages", "env", "files", "workdir", "user",
    "smoke", "image", "gpu", "matrix", "variant", "build_packages", "wheelhouse", "requirements",
    "platforms",
    "installer",
)  # fmt: skip
VARIANTS = ("runtime", "cuda-runtime", "devel")
INSTALLERS = ("uv", "pip")  # what installs the environment in the builder stage
REQUIRED_KEYS = ("name", "framework")
MATRIX_AXES = ("python", "cuda", "framework_version")  # the recipe keys a matrix: may vary
REQUIREMENTS_KEYS = ("path", "extras", "groups")
EXTRA_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class FileCopy:
    src: str  # relative to the recipe's folder, checked to stay inside it
    dest: str  # absolute path in the image


@dataclass(frozen=True)
class SmokeSpec:
    gpu: str = "auto"
    run: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageSpec:
    repository: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuFleet:
    """The GPUs the image must run on: the oldest driver and every architecture."""

    min_driver: str | None = None
    archs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecipeMatrix:
    """`matrix:`: values per axis (in the order written) and the combinations left out."""

    axes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[tuple[tuple[str, str], ...], ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    framework: str
    path: Path = Path("recipe.yaml")  # the file it came from; files: are relative to its folder
    framework_version: str | None = None
    python: str | None = None
    cuda: str | None = None
    base_image: str | None = None
    framework_from_base: bool = False
    packages: tuple[str, ...] = ()
    system_packages: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[FileCopy, ...] = ()
    workdir: str | None = None
    user: str = DEFAULT_USER
    smoke: SmokeSpec = field(default_factory=SmokeSpec)
    image: ImageSpec = field(default_factory=ImageSpec)
    gpu: GpuFleet = field(default_factory=GpuFleet)
    matrix: RecipeMatrix | None = None  # expanded into variants by builder.fanout
    variant: str = "runtime"  # the image's shape: runtime | cuda-runtime | devel
    build_packages: tuple[str, ...] = ()  # devel: compiled from source against CUDA, as wheels
    wheelhouse: str | None = None  # a folder of wheels, relative to the recipe's folder
    requirements: ProjectRequirements | None = None  # a project's requirements.txt, pyproject.toml or uv.lock
    platforms: tuple[str, ...] = (DEFAULT_PLATFORM.name,)  # os/arch the image is built for, one tag for all
    installer: str = ""  # uv | pip; "": the site config's, else uv

    @property
    def folder(self) -> Path:
        return self.path.parent


def check_image_ref(value: str, option: str) -> str:
    """Image references from the command line get the same allow-list as the recipe's."""
    if not IMAGE_REF_RE.fullmatch(value) or len(value) > 512:
        raise UsageError(
            f"{option} {value!r} is not an image reference",
            hint="expected [registry[:port]/]name[:tag][@sha256:digest], lower-case name",
        )
    return value


def load_recipe(path: str | Path) -> Recipe:
    """Read, parse and validate a recipe file. Raises RecipeError listing every problem."""
    p = Path(path)
    shown = str(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise RecipeError(shown, [Problem("", "file not found")]) from None
    except IsADirectoryError:
        raise RecipeError(shown, [Problem("", "is a folder, not a recipe file")]) from None
    except OSError as exc:
        raise RecipeError(shown, [Problem("", f"cannot be read: {exc.strerror}")]) from None
    return parse_recipe(data, p, shown=shown)


def parse_recipe(data: bytes, path: Path, *, shown: str | None = None) -> Recipe:
    shown = shown or str(path)
    try:
        doc, written = yamlsafe.load(data)
    except yamlsafe.YamlProblem as exc:
        raise RecipeError(shown, [Problem("", str(exc))]) from None
    v = _Validator(written, path.parent)
    recipe = v.recipe(doc, path)
    if v.problems or recipe is None:
        raise RecipeError(shown, v.problems)
    return recipe


class _Validator:
    def __init__(self, written: dict[yamlsafe.Path, yamlsafe.Scalar], folder: Path):
        self.written = written
        self.folder = folder
        self.problems: list[Problem] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    # -- scalars -----------------------------------------------------------------------------
    def text(
        self,
        value: Any,
        where: str,
        path: yamlsafe.Path,
        *,
        pattern: re.Pattern[str] | None = None,
        allowed: str = "",
        version_like: bool = False,
    ) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            src = self.written.get(path)
            shown = src.text if src else repr(value)
            if version_like and isinstance(value, (int, float)) and not isinstance(value, bool):
                key = where.rsplit(".", 1)[-1]
                self.fail(where, f'{shown} is a YAML number; quote it: {key}: "{shown}"')
            else:
                self.fail(where, f"{shown} is not text; expected {allowed or 'a string'}")
            return None
        if len(value) > MAX_TEXT:
            self.fail(where, f"is {len(value)} characters long; at most {MAX_TEXT} allowed")
            return None
        # fullmatch, not match: `$` also matches before a trailing newline, which would let
        # "git\n" through to a Dockerfile line.
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(where, f"{value!r} is not allowed; expected {allowed}")
            return None
        return value

    def choice(self, value: Any, where: str, path: yamlsafe.Path, options: tuple[str, ...]) -> str:
        if value is None:
            return options[0]
        allowed = " | ".join(options)
        text = self.text(value, where, path, allowed=allowed)
        if text is None:
            return options[0]
        if text not in options:
            close = difflib.get_close_matches(text, options, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(where, f"{text!r} is not one of: {allowed}{hint}")
            return options[0]
        return text

    def items(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {_kind(value)}")
            return []
        if len(value) > MAX_LIST:
            self.fail(where, f"has {len(value)} entries; at most {MAX_LIST} allowed")
            return []
        for i, item in enumerate(value):
            if item is None:  # `- ` with nothing after it: say so rather than drop it
                self.fail(f"{where}[{i}]", "is empty")
        return value  # callers skip the None entries (reported here), keeping indexes true

    def mapping(self, value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {_kind(value)}")
            return {}
        self.unknown(value, keys, where + ".")
        return value

    def unknown(self, doc: dict[str, Any], keys: tuple[str, ...], prefix: str = "") -> None:
        for key in doc:
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(f"{prefix}{key}", f"unknown key{hint}")

    # -- the recipe --------------------------------------------------------------------------
    def recipe(self, doc: Any, path: Path) -> Recipe | None:
        if not isinstance(doc, dict):
            self.fail("", f"a recipe is a mapping of keys to values, not {_kind(doc)}")
            return None
        self.unknown(doc, TOP_KEYS)
        for key in REQUIRED_KEYS:
            if key not in doc:
                self.fail(key, "required key is missing")
        schema = doc.get("schema", 1)
        if schema != 1 or isinstance(schema, bool):
            self.fail("schema", f"{schema!r} is not supported; this mlbuild reads schema 1")

        name = self.text(
            doc.get("name"), "name", ("name",), pattern=NAME_RE,
            allowed="lower-case letters, digits and . _ - between them (an image name)",
        )  # fmt: skip
        if name and len(name) > 64:
            self.fail("name", "is longer than 64 characters")
        frameworks = framework_names()
        if not frameworks:
            raise MatrixDataError(f"no data file in {data_dir()} declares a framework", hint=f"check ${DATA_DIR_ENV}")
        framework = self.choice(doc.get("framework"), "framework", ("framework",), frameworks)
        if doc.get("framework") is None and "framework" in doc:
            self.fail("framework", f"is empty; expected one of: {' | '.join(frameworks)}")
        framework_version = self.framework_version(doc.get("framework_version"))
        python = self.text(
            doc.get("python"), "python", ("python",), pattern=PYTHON_RE,
            allowed='major.minor, e.g. "3.11"', version_like=True,
        )  # fmt: skip
        cuda = self.cuda(doc.get("cuda"))
        base_image = self.text(
            doc.get("base_image"), "base_image", ("base_image",), pattern=IMAGE_REF_RE,
            allowed="an image reference such as registry.example.com/team/base:tag",
        )  # fmt: skip
        from_base = doc.get("framework_from_base", False)
        if not isinstance(from_base, bool):
            self.fail("framework_from_base", f"{from_base!r} is not true or false")
            from_base = False
        if from_base and not doc.get("base_image"):
            self.fail("framework_from_base", "needs base_image: the image that carries the framework")

        if doc.get("build_packages") and doc.get("variant") != "devel":
            self.fail("build_packages", "needs variant: devel (they are compiled against CUDA there)")
        if doc.get("variant") == "devel" and not doc.get("build_packages"):
            self.fail("variant", "devel compiles build_packages; list them (or use variant: cuda-runtime)")
        recipe = Recipe(
            name=name or "invalid",
            framework=framework,
            path=path,
            framework_version=framework_version,
            python=python,
            cuda=cuda,
            base_image=base_image,
            framework_from_base=from_base,
            packages=self.packages(doc.get("packages")),
            system_packages=self.system_packages(doc.get("system_packages")),
            env=self.env(doc.get("env")),
            files=self.files(doc.get("files")),
            workdir=self.text(
                doc.get("workdir"), "workdir", ("workdir",), pattern=SAFE_ABS_PATH_RE,
                allowed="an absolute path of letters, digits and . _ + - (no ..)",
            ) if _no_dotdot(self, doc.get("workdir"), "workdir") else None,
            user=self.user(doc.get("user")),
            smoke=self.smoke(doc.get("smoke")),
            image=self.image(doc.get("image")),
            gpu=self.gpu(doc.get("gpu")),
            matrix=self.matrix(doc.get("matrix"), doc),
            variant=self.choice(doc.get("variant"), "variant", ("variant",), VARIANTS),
            build_packages=self.packages(doc.get("build_packages"), "build_packages"),
            wheelhouse=self.wheelhouse(doc.get("wheelhouse")),
            requirements=self.requirements(doc.get("requirements")),
            platforms=self.platforms(doc.get("platforms")),
            installer=self.choice(doc.get("installer"), "installer", ("installer",), INSTALLERS)
            if doc.get("installer") is not None else "",
        )  # fmt: skip
        return recipe

    def framework_version(self, value: Any) -> str | None:
        text = self.text(
            value, "framework_version", ("framework_version",),
            allowed='a version prefix ("2.4") or a specifier set (">=2.3,<2.5")', version_like=True,
        )  # fmt: skip
        if text is None:
            return None
        text = text.strip()
        if VERSION_PREFIX_RE.fullmatch(text):
            return text
        try:
            spec = SpecifierSet(text)
        except InvalidSpecifier:
            self.fail(
                "framework_version",
                f'{text!r} is neither a version prefix ("2.4") nor a PEP 440 specifier set (">=2.3,<2.5", "==2.4.1")',
            )
            return None
        if not len(spec):
            self.fail("framework_version", "is empty")
            return None
        return str(spec)

    def cuda(self, value: Any) -> str | None:
        text = self.text(
            value, "cuda", ("cuda",), allowed='major.minor such as "12.4", or "cpu"',
            version_like=True,
        )  # fmt: skip
        if text is None:
            return None
        if text == "cpu" or CUDA_RE.fullmatch(text):
            return text
        self.fail("cuda", f'{text!r} is not allowed; expected major.minor such as "12.4", or "cpu"')
        return None

    def packages(self, value: Any, key: str = "packages") -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.items(value, key)):
            where = f"{key}[{i}]"
            text = self.text(item, where, (key, i), allowed="a PEP 508 requirement")
            if text is None:
                continue
            req, why = requirement_problem(text)
            if req is None:
                self.fail(where, why)
                continue
            out.append(str(req))
        return tuple(out)

    def system_packages(self, value: Any) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.items(value, "system_packages")):
            text = self.text(
                item, f"system_packages[{i}]", ("system_packages", i), pattern=DEB_NAME_RE,
                allowed="a Debian package name (a-z 0-9 + . -), optionally =version",
            )  # fmt: skip
            if text:
                out.append(text)
        return tuple(out)

    def env(self, value: Any) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.fail("env", f"expected a mapping of NAME: value, got {_kind(value)}")
            return ()
        out: list[tuple[str, str]] = []
        for key, raw in value.items():
            where = f"env.{key}"
            if not ENV_NAME_RE.fullmatch(key):
                self.fail(where, "is not a valid variable name; expected [A-Za-z_][A-Za-z0-9_]*")
                continue
            if key in RESERVED_ENV:
                self.fail(where, "is set by mlbuild for the image's Python environment")
                continue
            if isinstance(raw, bool) or raw is None:
                shown = self.written.get(("env", key))
                self.fail(where, f"{shown.text if shown else raw} is not text; quote it")
                continue
            text = str(raw) if isinstance(raw, (int, float)) else raw
            if not isinstance(text, str):
                self.fail(where, f"expected text, got {_kind(raw)}")
                continue
            if any(c in text for c in "\n\r\x00") or len(text) > MAX_TEXT:
                self.fail(where, "must be one line of at most 4096 characters")
                continue
            out.append((key, text))
        return tuple(sorted(out))

    def files(self, value: Any) -> tuple[FileCopy, ...]:
        out: list[FileCopy] = []
        for i, item in enumerate(self.items(value, "files")):
            where = f"files[{i}]"
            entry = self.mapping(item, where, ("src", "dest"))
            if not entry:
                if item is not None and isinstance(item, dict):
                    self.fail(where, "needs src and dest")
                continue
            src = self.text(
                entry.get("src"), f"{where}.src", ("files", i, "src"), pattern=SAFE_REL_PATH_RE,
                allowed="a path relative to the recipe's folder (letters, digits, . _ + -)",
            )  # fmt: skip
            dest = self.text(
                entry.get("dest"), f"{where}.dest", ("files", i, "dest"), pattern=SAFE_ABS_PATH_RE,
                allowed="an absolute path in the image (letters, digits, . _ + -)",
            )  # fmt: skip
            if "src" not in entry or "dest" not in entry:
                self.fail(where, "needs both src and dest")
                continue
            if src is None or dest is None:
                continue
            if ".." in src.split("/") or ".." in dest.split("/"):
                self.fail(where, "paths may not contain '..'")
                continue
            if self.file_inside(src, f"{where}.src"):
                out.append(FileCopy(src=src, dest=dest))
        return tuple(out)

    def file_inside(self, src: str, where: str) -> bool:
        """src must exist and, after following symlinks, stay inside the recipe's folder."""
        root = self.folder.resolve()
        target = (self.folder / src).resolve()
        if not target.is_relative_to(root):
            self.fail(where, f"{src!r} leads outside the recipe's folder (through a symlink)")
            return False
        if not target.exists():
            self.fail(where, f"{src!r} does not exist in {self.folder}")
            return False
        if target.is_dir():
            for sub in target.rglob("*"):
                if not sub.resolve().is_relative_to(root):
                    self.fail(where, f"{sub} links outside the recipe's folder")
                    return False
        return True

    def wheelhouse(self, value: Any) -> str | None:
        text = self.text(
            value, "wheelhouse", ("wheelhouse",), pattern=SAFE_REL_PATH_RE,
            allowed="a folder of wheels, relative to the recipe's folder",
        )  # fmt: skip
        if text is None:
            return None
        if ".." in text.split("/") or not self.file_inside(text, "wheelhouse"):
            if ".." in text.split("/"):
                self.fail("wheelhouse", "may not contain '..'")
            return None
        if not (self.folder / text).is_dir():
            self.fail("wheelhouse", f"{text!r} is not a folder")
            return None
        return text

    def requirements(self, value: Any) -> ProjectRequirements | None:
        """`requirements: FILE` or `{path: FILE, extras: [...], groups: [...]}`: read now, so that
        its problems come with the recipe's (builder.projectfiles says what is allowed)."""
        from builder.projectfiles import ProjectFileError, RequirementsRef
        from builder.projectinput import read_project

        if value is None:
            return None
        doc = {"path": value} if isinstance(value, str) else self.mapping(value, "requirements", REQUIREMENTS_KEYS)
        if not doc:
            if not isinstance(value, dict):
                return None
            self.fail("requirements", "needs path: a requirements.txt, pyproject.toml or uv.lock")
            return None
        where = "requirements" if isinstance(value, str) else "requirements.path"
        key: yamlsafe.Path = ("requirements",) if isinstance(value, str) else ("requirements", "path")
        if "path" not in doc:
            self.fail("requirements", "needs path: a requirements.txt, pyproject.toml or uv.lock")
        path = self.text(
            doc.get("path"), where, key, pattern=SAFE_REL_PATH_RE,
            allowed="a file relative to the recipe's folder (letters, digits, . _ + - /)",
        )  # fmt: skip
        names: dict[str, tuple[str, ...]] = {}
        for field_name in ("extras", "groups"):
            found = []
            for i, item in enumerate(self.items(doc.get(field_name), f"requirements.{field_name}")):
                text = self.text(
                    item, f"requirements.{field_name}[{i}]", ("requirements", field_name, i),
                    pattern=EXTRA_NAME_RE, allowed="a name of letters, digits and . _ -",
                )  # fmt: skip
                if text:
                    found.append(text)
            names[field_name] = tuple(found)
        if path is None or not _no_dotdot(self, path, where):
            return None
        try:
            return read_project(RequirementsRef(path, names["extras"], names["groups"]), self.folder)
        except ProjectFileError as exc:
            for problem in exc.problems:
                self.fail(where, problem)
            return None

    def user(self, value: Any) -> str:
        text = self.text(
            value, "user", ("user",), pattern=USER_RE,
            allowed='a user name (a-z, 0-9, _ -) or "root"',
        )  # fmt: skip
        return text or DEFAULT_USER

    def smoke(self, value: Any) -> SmokeSpec:
        doc = self.mapping(value, "smoke", ("gpu", "run"))
        gpu = self.choice(doc.get("gpu"), "smoke.gpu", ("smoke", "gpu"), GPU_MODES)
        run: list[str] = []
        for i, item in enumerate(self.items(doc.get("run"), "smoke.run")):
            text = self.text(item, f"smoke.run[{i}]", ("smoke", "run", i), allowed="a command")
            if text is None:
                continue
            if any(c in text for c in "\n\r\x00") or not text.strip():
                self.fail(f"smoke.run[{i}]", "must be one non-empty line")
                continue
            run.append(text)
        return SmokeSpec(gpu=gpu, run=tuple(run))

    def image(self, value: Any) -> ImageSpec:
        doc = self.mapping(value, "image", ("repository", "tags"))
        repo = self.text(
            doc.get("repository"), "image.repository", ("image", "repository"),
            pattern=REPOSITORY_RE, allowed="a repository such as registry.example.com/team/name",
        )  # fmt: skip
        tags: list[str] = []
        for i, item in enumerate(self.items(doc.get("tags"), "image.tags")):
            text = self.text(
                item, f"image.tags[{i}]", ("image", "tags", i), pattern=TAG_RE,
                allowed="a tag: letters, digits, _ . - (at most 128, not starting with . or -)",
                version_like=True,
            )  # fmt: skip
            if text:
                tags.append(text)
        return ImageSpec(repository=repo, tags=tuple(tags))

    def platforms(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return (DEFAULT_PLATFORM.name,)
        names: list[str] = []
        for i, item in enumerate(self.items(value, "platforms")):
            name = self.choice(item, f"platforms[{i}]", ("platforms", i), tuple(PLATFORMS))
            if name != item:  # refused above
                continue
            if name in names:
                self.fail(f"platforms[{i}]", f"{name!r} is listed twice")
            elif name:
                names.append(name)
        if isinstance(value, list) and not value:
            self.fail("platforms", f"is empty; list one or more of: {' | '.join(PLATFORMS)}")
        return tuple(names) or (DEFAULT_PLATFORM.name,)

    def gpu(self, value: Any) -> GpuFleet:
        doc = self.mapping(value, "gpu", ("min_driver", "archs"))
        driver = self.text(
            doc.get("min_driver"), "gpu.min_driver", ("gpu", "min_driver"), pattern=DRIVER_RE,
            allowed='a driver version such as "535.104.05"', version_like=True,
        )  # fmt: skip
        archs: list[str] = []
        for i, item in enumerate(self.items(doc.get("archs"), "gpu.archs")):
            text = self.text(
                item, f"gpu.archs[{i}]", ("gpu", "archs", i), pattern=ARCH_RE,
                allowed="an architecture such as sm_80",
            )  # fmt: skip
            if text:
                archs.append(text)
        return GpuFleet(min_driver=driver, archs=tuple(sorted(set(archs))))

    def matrix(self, value: Any, doc: dict[str, Any]) -> RecipeMatrix | None:
        if value is None:
            return None
        spec = self.mapping(value, "matrix", (*MATRIX_AXES, "exclude"))
        if not isinstance(value, dict):
            return None
        axes: list[tuple[str, tuple[str, ...]]] = []
        for axis in MATRIX_AXES:
            if axis not in spec:
                continue
            where = f"matrix.{axis}"
            if axis in doc:  # one place decides each value, or a reader cannot tell which wins
                self.fail(where, f"{axis} is also set at the top level; keep one of the two")
            raw = spec[axis]
            if isinstance(raw, list) and not raw:
                self.fail(where, "is empty; list at least one value")
            values: list[str] = []
            for i, item in enumerate(self.items(raw, where)):
                text = self.axis_value(axis, item, f"{where}[{i}]", ("matrix", axis, i))
                if text is None:
                    continue
                if text in values:
                    self.fail(f"{where}[{i}]", f"{text!r} is listed twice")
                    continue
                values.append(text)
            if values:
                axes.append((axis, tuple(values)))
        if not any(axis in spec for axis in MATRIX_AXES):
            self.fail("matrix", f"names no axis; expected some of: {', '.join(MATRIX_AXES)}")
        known = dict(axes)
        excludes: list[tuple[tuple[str, str], ...]] = []
        for i, item in enumerate(self.items(spec.get("exclude"), "matrix.exclude")):
            where = f"matrix.exclude[{i}]"
            if not isinstance(item, dict) or not item:
                self.fail(where, f'expected a mapping such as {{python: "3.11"}}, got {_kind(item)}')
                continue
            entry: list[tuple[str, str]] = []
            for key, raw in item.items():
                if key not in known:
                    self.fail(f"{where}.{key}", "is not an axis of this matrix")
                    continue
                text = self.text(raw, f"{where}.{key}", ("matrix", "exclude", i, key), version_like=True)
                if text is None:
                    continue
                if text not in known[key]:
                    self.fail(f"{where}.{key}", f"{text!r} is not among matrix.{key}'s values")
                    continue
                entry.append((key, text))
            if len(entry) == len(item):
                excludes.append(tuple(sorted(entry)))
        return RecipeMatrix(axes=tuple(axes), exclude=tuple(excludes))

    def axis_value(self, axis: str, item: Any, where: str, path: yamlsafe.Path) -> str | None:
        """One matrix value, checked as the top-level key of that name would be."""
        if axis == "python":
            return self.text(item, where, path, pattern=PYTHON_RE,
                             allowed='major.minor, e.g. "3.11"', version_like=True)  # fmt: skip
        text = self.text(item, where, path, allowed="a quoted string", version_like=True)
        if text is None:
            return None
        if axis == "cuda":
            if text == "cpu" or CUDA_RE.match(text):
                return text
            self.fail(where, f'{text!r} is not allowed; expected major.minor such as "12.4", or "cpu"')
            return None
        text = text.strip()
        if VERSION_PREFIX_RE.match(text):
            return text
        try:
            if len(SpecifierSet(text)):
                return str(SpecifierSet(text))
        except InvalidSpecifier:
            pass
        self.fail(where, f'{text!r} is neither a version prefix ("2.4") nor a PEP 440 specifier set')
        return None


def _no_dotdot(v: _Validator, value: Any, where: str) -> bool:
    if isinstance(value, str) and ".." in value.split("/"):
        v.fail(where, f"{value!r} may not contain '..'")
        return False
    return True


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}
    if value is None:
        return "nothing (null)"
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
