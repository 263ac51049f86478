"""A YAML loader for untrusted recipes.

PyYAML's safe loader still expands alias bombs ("billion laughs"), silently keeps the last of
duplicate keys and loses how a scalar was written (`python: 3.10` arrives as 3.1). This module
composes the node graph and builds plain Python values itself, so it can bound the work, refuse
duplicates and unknown tags, and keep the source text of scalars for error messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

MAX_BYTES = 256 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 32

_STR = "tag:yaml.org,2002:str"
_PLAIN_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

Path = tuple[str | int, ...]


class YamlProblem(Exception):
    """The document cannot be read as a recipe; the message says why and where."""


@dataclass(frozen=True)
class Scalar:
    """How a non-text scalar was written, for "quote it" messages."""

    text: str
    line: int


def load(data: bytes) -> tuple[Any, dict[Path, Scalar]]:
    """Parse one YAML document into plain dicts/lists/scalars.

    Returns the value and, for each number, boolean or null, how it was written and where (by its
    path of keys and indexes), so validation can say `python: 3.10 is a YAML number; quote it`.
    """
    if len(data) > MAX_BYTES:
        raise YamlProblem(f"file is {len(data)} bytes; recipes are limited to {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"not UTF-8 text (byte {exc.start}: {data[exc.start]:#04x})") from None
    if "\x00" in text:
        raise YamlProblem("contains a NUL character")
    _check_depth(text)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        where = f" (line {exc.problem_mark.line + 1})" if exc.problem_mark else ""
        reason = exc.problem or str(exc)
        if "\t" in text:
            reason += "; indent with spaces, not tabs"
        raise YamlProblem(f"not valid YAML{where}: {reason}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {exc}") from None
    if node is None:
        raise YamlProblem("the file is empty")
    builder = _Builder()
    return builder.build(node, ()), builder.written


def _check_depth(text: str) -> None:
    """PyYAML's composer recurses once per level: "[[[[..." would exhaust Python's stack before
    the builder's own depth check runs. The parser's events come without recursion."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels (line {line})")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return  # compose() below reports it with its line


class _Builder:
    def __init__(self) -> None:
        self.count = 0
        self.written: dict[Path, Scalar] = {}
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path) -> Any:
        # Counting every visit (aliases included) bounds the work an alias bomb can cause.
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            raise YamlProblem(f"more than {MAX_NODES} values (aliases that expand without bound are refused)")
        if len(path) > MAX_DEPTH:
            raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels (line {line})")
        if node.tag not in _PLAIN_TAGS:
            raise YamlProblem(f"line {line}: YAML tag {node.tag!r} is not allowed in a recipe")
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                    raise YamlProblem(f"line {key_line}: keys must be plain text")
                key = str(key_node.value)
                if key in result:
                    raise YamlProblem(f"line {key_line}: duplicate key {key!r}")
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self._constructor.construct_object(node, deep=True)
        if not isinstance(value, str):
            self.written[path] = Scalar(str(node.value), line)
        return value
