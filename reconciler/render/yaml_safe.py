"""YAML for untrusted repositories: plain data only, bounded work, Kubernetes-like typing.

Why not just ``yaml.safe_load_all``:

* **Aliases.**  A 1 KB "billion laughs" document builds a graph that explodes when anything
  walks it (JSON encoding, diffing, substitution).  Counting alias *events* is not enough:
  the classic attack uses only 8 x 9 = 72 aliases.  So every document's node graph is
  measured before it is constructed: the number of alias uses **after expansion** may not
  exceed ``max_aliases``, and the expanded node count may not exceed ``max_nodes`` (the
  caller passes the file-size limit: an alias-free document needs at least two bytes per
  node, so expansion can never yield more than the largest document we would accept
  anyway).  The walk is linear in the size of the text, so the attack fails in
  milliseconds.
* **Types.**  Kubernetes decodes YAML into JSON: there are no dates, sets, binary blobs or
  base-60 numbers.  PyYAML would turn ``date: 2024-01-01`` into a ``datetime.date`` (which
  then cannot be sent to the API server) and ``port: 1:20`` into 80.  Timestamps stay the
  text the user wrote, base-60 is not recognised, and ``!!binary``/``!!set``/``!!omap``/
  ``!!pairs`` (and any Python tag) are refused.
* **Duplicate keys** are refused, as kubectl and kustomize refuse them: silently keeping
  the last of two ``env:`` blocks hides real mistakes.

The libyaml (C) parser is used when PyYAML was built with it; only construction is Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

try:  # the C parser is ~10x faster; fall back to pure Python where libyaml is absent
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser, Composer):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)


class YAMLLimitError(ValueError):
    """A document was refused by a guard (aliases, expansion, tags, duplicate keys); says where."""

    def __init__(self, why: str, doc: int, line: int | None = None) -> None:
        self.why, self.doc, self.line = why, doc, line
        super().__init__(why)


class _Resolver(Resolver):
    """YAML 1.1 implicit types as Kubernetes (go-yaml) sees them: no timestamps, no base-60."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp",)]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
for first in list(_Resolver.yaml_implicit_resolvers):
    _Resolver.yaml_implicit_resolvers[first] = [
        (tag, rx) for tag, rx in _Resolver.yaml_implicit_resolvers[first] if tag not in (_INT, _FLOAT)
    ]
    if not _Resolver.yaml_implicit_resolvers[first]:
        del _Resolver.yaml_implicit_resolvers[first]
_Resolver.add_implicit_resolver(
    _INT,
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_Resolver.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class _Constructor(yaml.constructor.SafeConstructor):
    """SafeConstructor without the types JSON cannot carry."""

    def construct_timestamp_as_text(self, node: Node) -> str:
        return str(self.construct_scalar(node))  # type: ignore[arg-type]

    def refuse(self, node: Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"tag {node.tag} is not allowed in Kubernetes manifests (JSON has no such type)",
            node.start_mark,
        )


_Constructor.yaml_constructors = dict(yaml.constructor.SafeConstructor.yaml_constructors)
_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_timestamp_as_text)  # type: ignore[type-var]
for _tag in ("binary", "set", "omap", "pairs"):
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _Constructor.refuse)  # type: ignore[type-var]


class Loader(_Parser, _Constructor, _Resolver):
    """The parser, the restricted constructor and the resolver, as PyYAML's CSafeLoader combines them."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        _Constructor.__init__(self)
        _Resolver.__init__(self)


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, MappingNode):
        for k, v in node.value:
            yield k
            yield v
    elif isinstance(node, SequenceNode):
        yield from node.value


def _check_keys(node: MappingNode, doc: int) -> None:
    seen: set[tuple[str, str]] = set()
    for k, _ in node.value:
        if not isinstance(k, ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            continue
        key = (k.tag, k.value)
        if key in seen:
            raise YAMLLimitError(f"duplicate key {k.value!r}", doc, k.start_mark.line + 1)
        seen.add(key)


def measure(root: Node, doc: int, max_aliases: int, max_nodes: int) -> int:
    """Alias uses of the expanded document; raises YAMLLimitError past a limit or on a recursive alias.

    Iterative, memoised post-order walk.  A node reached a second time is an alias use (the
    composer returns the anchored node object for every alias); it counts one, plus every
    alias use inside the anchored subtree, because expansion copies those too.
    """
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (alias uses, nodes) of its expansion
    active: set[int] = {id(root)}
    stack: list[tuple[Node, Iterator[Node], list[int]]] = [(root, _children(root), [0, 1])]
    total_aliases = total_nodes = 0
    while stack:
        node, it, acc = stack[-1]
        child = next(it, None)
        if child is None:
            stack.pop()
            active.discard(id(node))
            done[id(node)] = (acc[0], acc[1])
            if isinstance(node, MappingNode):
                _check_keys(node, doc)
            if stack:
                parent = stack[-1][2]
                parent[0] += acc[0]
                parent[1] += acc[1]
            continue
        cid = id(child)
        if cid in active:
            raise YAMLLimitError("recursive alias (an anchor used inside itself)", doc, child.start_mark.line + 1)
        if cid in done:
            aliases, nodes = done[cid]
            acc[0] += 1 + aliases
            acc[1] += nodes
            total_aliases += 1 + aliases
            total_nodes += nodes
            if total_aliases > max_aliases:
                raise YAMLLimitError(
                    f"more than {max_aliases} YAML alias uses after expansion (billion-laughs guard)",
                    doc,
                    root.start_mark.line + 1,
                )
            if total_nodes > max_nodes:
                raise YAMLLimitError(
                    f"YAML aliases expand to more than {max_nodes} nodes (billion-laughs guard)",
                    doc,
                    root.start_mark.line + 1,
                )
            continue
        active.add(cid)
        stack.append((child, _children(child), [0, 1]))
    return done[id(root)][0]


def load_all(text: str, *, max_aliases: int, max_nodes: int) -> list[Any]:
    """Every document of ``text`` (``None`` for an empty one), guarded as the module docstring says.

    Raises ``yaml.YAMLError`` (with ``problem_mark``) for syntax errors and YAMLLimitError
    for refused documents.
    """
    loader = Loader(text)
    docs: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            doc = len(docs) + 1
            if node is None:
                docs.append(None)
                continue
            measure(node, doc, max_aliases, max_nodes)
            docs.append(loader.construct_document(node))
    finally:
        loader.dispose()
    return docs


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style, no line folding, multi-line strings as ``|`` blocks (what kustomize writes)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(obj: Any) -> str:
    """One object as block YAML that ``load_all`` reads back to an equal object."""
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=2**31 - 1, default_flow_style=False
    )
