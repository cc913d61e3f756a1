"""YAML in, JSON-safe data out, within limits: the one loader for user-supplied YAML.

Why not plain ``yaml.safe_load``: it is safe from code execution, not from size.
A 285-byte file of aliases expands to 692 KB when served as JSON (nine levels
exhaust memory), 3000 nested brackets overflow the composer's recursion, and
``!!binary``, ``!!set``, ``.nan``, a 5000-digit integer or the "date"
``2001-13-45`` either cannot become JSON or raise a bare ValueError. Here each
of those is a ``YamlRefused`` naming the line and column, never the content.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from core.limits import LIMITS, Limits


class YamlRefused(ValueError):
    """YAML that is invalid or over a limit; the message says which and where, without quoting it."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        self.problem, self.line, self.column = problem, line, column
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"Invalid YAML{where}: {problem}")


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_ALLOWED_TAGS = {
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map", "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:merge",
}


def _mark(node_or_mark: Any) -> tuple[int | None, int | None]:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    if mark is None or not hasattr(mark, "line"):
        return None, None
    return mark.line + 1, mark.column + 1


class _Constructor(SafeConstructor):
    """Only JSON's types; timestamps become ISO strings; the rest is refused by tag."""

    limits: Limits = LIMITS

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if node.tag not in _ALLOWED_TAGS:
            raise YamlRefused(f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed (only JSON types)", *_mark(node))
        return super().construct_object(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > self.limits.max_int_digits:
            raise YamlRefused(f"an integer of {digits} digits cannot be represented (limit {self.limits.max_int_digits})", *_mark(node))
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise YamlRefused("an integer that cannot be represented", *_mark(node)) from None

    def construct_yaml_float(self, node: ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise YamlRefused("infinite or NaN numbers cannot be represented in JSON", *_mark(node))
        return value

    def construct_yaml_timestamp(self, node: ScalarNode) -> str:
        try:
            value = super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            raise YamlRefused("a date or time that does not exist (check month, day and hour)", *_mark(node)) from None
        return value.isoformat()


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)
_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _Constructor, yaml.resolver.Resolver):
    """The pure-Python safe loader with a depth and alias budget enforced while composing."""

    def __init__(self, stream: str, limits: Limits) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Constructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.limits = limits
        self._depth = 0
        self.aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.max_yaml_aliases:
                raise YamlRefused(f"more than {self.limits.max_yaml_aliases} aliases", *_mark(self.peek_event()))
        self._depth += 1
        try:
            if self._depth > self.limits.max_depth:
                raise YamlRefused(f"nested more than {self.limits.max_depth} levels deep", *_mark(self.peek_event()))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_FLOW_QUOTED = re.compile(r"'[^'\n]*'|\"(?:[^\"\\\n]|\\.)*\"|(?:^|\s)#[^\n]*")
_FLOW_BRACKETS = re.compile(r"[\[\]{}]")


def flow_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting outside quotes and comments (an upper bound the scanner respects).

    Checked before parsing: PyYAML's scanner does quadratic work on thousands of
    open brackets before the composer could refuse them.
    """
    bare = _FLOW_QUOTED.sub("", text)
    depth = deepest = 0
    for m in _FLOW_BRACKETS.finditer(bare):
        depth = depth + 1 if m.group() in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def expanded_size(node: Node, budget: int) -> int:
    """How many nodes the document has once aliases are expanded (what JSON would hold).

    Memoised per node, so a bomb is measured without being expanded; stops counting
    past ``budget``.
    """
    memo: dict[int, int] = {}

    def size(n: Node) -> int:
        if id(n) in memo:
            return memo[id(n)]
        memo[id(n)] = budget + 1  # a cycle (a recursive alias) counts as too big
        if isinstance(n, SequenceNode):
            total = 1 + sum(size(c) for c in n.value)
        elif isinstance(n, MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        else:
            total = 1
        memo[id(n)] = total = min(total, budget + 1)
        return total

    return size(node)


def _distinct(node: Node) -> set[int]:
    seen: set[int] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, MappingNode):
            stack.extend(x for pair in n.value for x in pair)
    return seen


def load_yaml(text: str | bytes, *, limits: Limits = LIMITS) -> Any:
    """Parse one YAML document into JSON-compatible data, or raise YamlRefused."""
    if isinstance(text, bytes):
        if len(text) > limits.max_yaml_bytes:
            raise YamlRefused(f"the document is over {limits.max_yaml_bytes} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise YamlRefused("the document is not UTF-8 text") from None
    if len(text) > limits.max_yaml_bytes:
        raise YamlRefused(f"the document is over {limits.max_yaml_bytes} bytes")
    if flow_depth(text) > limits.max_depth:
        raise YamlRefused(f"brackets nested more than {limits.max_depth} levels deep")
    loader = _Loader(text, limits)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if loader.aliases:
            # Anchors shared a few times are fine; a document that grows tenfold through
            # aliases is a bomb (a 285-byte one becomes 692 KB of JSON).
            distinct = len(_distinct(node))
            allowed = min(limits.max_nodes, max(10_000, 10 * distinct))
            if expanded_size(node, allowed) > allowed:
                raise YamlRefused(f"aliases expand the document to more than {allowed} values ({distinct} written)")
        return loader.construct_document(node)
    except YamlRefused:
        raise
    except (ConstructorError, ComposerError, yaml.MarkedYAMLError) as exc:
        problem = _QUOTED.sub("'…'", exc.problem or exc.context or "syntax error")
        raise YamlRefused(problem, *_mark(exc.problem_mark)) from None
    except yaml.YAMLError:
        raise YamlRefused("the document cannot be parsed") from None
    except RecursionError:
        raise YamlRefused(f"nested more than {limits.max_depth} levels deep") from None
    finally:
        loader.dispose()


def load_yaml_mapping(text: str | bytes, *, limits: Limits = LIMITS) -> dict[str, Any]:
    data = load_yaml(text, limits=limits)
    if not isinstance(data, dict):
        raise YamlRefused("the top level must be a mapping (key: value pairs)")
    return data
