"""YAML for untrusted repositories: plain data only, bounded work, read the way kubectl reads it.

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
* **Meaning.**  A manifest must mean here what it means to ``kubectl apply`` and to the API
  server, which read YAML with go-yaml v2 through sigs.k8s.io/yaml; PyYAML's YAML 1.1
  resolver differs (it cannot even construct a bare ``=``, reads ``y`` as a string and
  ``0o17``/``1e3``/``08`` as strings, ``2024-01-01`` as a date, ``1:20`` as 80, and lets
  explicit keys beat a later ``<<`` merge).  So PyYAML's parser (libyaml) is kept and its
  resolver and constructor are replaced by go-yaml's rules (``yaml_scalars``), and a file
  is split into documents where kubectl splits it: at lines starting ``---``.
* **Refusals.**  Where kubectl refuses (NaN, a null map key, a bad explicit tag, a
  ``---`` line with content after it) we refuse, naming the file, document and line.  Where
  kubectl silently loses data we refuse too: duplicate keys (kubectl keeps the last,
  kustomize refuses), a document after ``...`` without ``---`` (kubectl ignores it), and
  tags outside the YAML core schema (``!!set``, ``!!python/...``, ``!local``: kubectl drops
  the tag and reads the plain value).

The libyaml (C) parser is used when PyYAML was built with it; only resolution and
construction are Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.constructor import BaseConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from reconciler.render import yaml_scalars

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
    """A document was refused (a guard, or a value kubectl cannot read either); says where.

    ``line`` counts from the start of the file (1-based), ``doc`` from 1.
    """

    def __init__(self, why: str, doc: int, line: int | None = None) -> None:
        self.why, self.doc, self.line = why, doc, line
        super().__init__(why)


class _Resolver(BaseResolver):
    """Tags plain scalars by go-yaml v2's rules (``yaml_scalars``), the rules kubectl reads with."""

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        return resolve_tag(kind, value, implicit)


def resolve_tag(kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
    """The tag of an untagged node: plain scalars by go-yaml's rules, quoted ones are strings."""
    if kind is ScalarNode:
        return yaml_scalars.resolve_plain(value or "")[0] if implicit[0] else yaml_scalars.STR
    return BaseResolver.DEFAULT_SEQUENCE_TAG if kind is SequenceNode else BaseResolver.DEFAULT_MAPPING_TAG


class _Constructor(BaseConstructor):
    """Plain data as kubectl would send it: core tags only, Go's typing, Go's merge order, no duplicates.

    ``doc`` and ``line_offset`` place refusals in the file (a file is read one kubectl
    document at a time, see ``load_all``).
    """

    doc = 0
    line_offset = 0
    source = ""  # the text being read, to see how a double-quoted scalar was escaped

    def refuse(self, node: Node, why: str) -> YAMLLimitError:
        return YAMLLimitError(why, self.doc, node.start_mark.line + 1 + self.line_offset)

    def go_scalar(self, node: Node) -> tuple[str, Any]:
        if not isinstance(node, ScalarNode):
            raise self.refuse(node, f"tag {node.tag} needs a scalar, found a {_kind(node)}")
        if node.style == '"' and _SLASH_ESCAPE.search(self.source, node.start_mark.index, node.end_mark.index):
            raise self.refuse(
                node,
                "found unknown escape character '\\/': YAML 1.1, which kubectl reads, has no such escape; write '/'",
            )
        try:
            return yaml_scalars.resolve_tagged(node.tag, node.value)
        except yaml_scalars.ScalarError as e:
            raise self.refuse(node, str(e)) from None

    def construct_go_scalar(self, node: Node) -> Any:
        tag, value = self.go_scalar(node)
        try:
            return yaml_scalars.json_value(tag, value)
        except yaml_scalars.ScalarError as e:
            raise self.refuse(node, str(e)) from None

    def construct_go_sequence(self, node: Node) -> Iterator[list[Any]]:
        if not isinstance(node, SequenceNode):
            raise self.refuse(node, f"tag {node.tag} needs a sequence, found a {_kind(node)}")
        data: list[Any] = []
        yield data
        data.extend(self.construct_object(child, deep=True) for child in node.value)

    def construct_go_mapping(self, node: Node) -> Iterator[dict[str, Any]]:
        """go-yaml v2's order: a merge key ``<<`` copies its maps in *where it stands*, so a key
        written before it is overwritten and one written after it wins (PyYAML lets explicit
        keys always win).  Keys are converted to strings as sigs.k8s.io/yaml converts them;
        two keys that end up equal (``a``/``a``, ``yes``/``true``, ``1``/``"1"``) are refused,
        where kubectl would keep one of them silently."""
        if not isinstance(node, MappingNode):
            raise self.refuse(node, f"tag {node.tag} needs a mapping, found a {_kind(node)}")
        data: dict[str, Any] = {}
        yield data
        written: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == "<<" and key_node.tag == yaml_scalars.MERGE:
                for source in reversed(self.merge_sources(key_node, value_node)):
                    data.update(self.construct_object(source, deep=True))
                continue
            key = self.go_key(key_node)
            if key in written:
                raise self.refuse(key_node, f"duplicate key {key!r}")
            written.add(key)
            data[key] = self.construct_object(value_node, deep=True)

    def merge_sources(self, key_node: Node, value: Node) -> list[Node]:
        """The maps a merge key copies, earliest first (the earliest wins among them)."""
        if isinstance(value, MappingNode):
            return [value]
        if isinstance(value, SequenceNode) and all(isinstance(v, MappingNode) for v in value.value):
            return list(value.value)
        raise self.refuse(key_node, "map merge requires map or sequence of maps as the value")

    def go_key(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise self.refuse(node, f"invalid map key: a {_kind(node)} cannot be a key of a Kubernetes object")
        if node.tag not in yaml_scalars.SCALAR_TAGS:
            raise self.refuse(node, _tag_refusal(node.tag))
        tag, value = self.go_scalar(node)
        try:
            return yaml_scalars.json_key(tag, value)
        except yaml_scalars.ScalarError as e:
            raise self.refuse(node, str(e)) from None

    def construct_other(self, node: Node) -> Any:
        raise self.refuse(node, _tag_refusal(node.tag))


# An odd number of backslashes before "/": the YAML 1.2 escape that libyaml knows and go-yaml v2 refuses.
_SLASH_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\/")
# go-yaml v2 knows this escape in double-quoted scalars and libyaml does not; read as a quote.
_QUOTE_ESCAPE_FIXES = 20


def _kind(node: Node) -> str:
    return "mapping" if isinstance(node, MappingNode) else "sequence" if isinstance(node, SequenceNode) else "scalar"


def _tag_refusal(tag: str) -> str:
    return (
        f"tag {tag} is not allowed in Kubernetes manifests: only the YAML core tags (!!str, !!int, !!float, "
        "!!bool, !!null, !!binary, !!timestamp, !!map, !!seq) are read; kubectl would drop this one silently"
    )


_Constructor.yaml_constructors = {}
for _tag in yaml_scalars.SCALAR_TAGS:
    _Constructor.add_constructor(_tag, _Constructor.construct_go_scalar)  # type: ignore[type-var]
_Constructor.add_constructor(BaseResolver.DEFAULT_SEQUENCE_TAG, _Constructor.construct_go_sequence)  # type: ignore[type-var]
_Constructor.add_constructor(BaseResolver.DEFAULT_MAPPING_TAG, _Constructor.construct_go_mapping)  # type: ignore[type-var]
_Constructor.add_constructor(None, _Constructor.construct_other)  # type: ignore[type-var]


class Loader(_Parser, _Constructor, _Resolver):
    """The parser, the kubectl-typed constructor and resolver, as PyYAML's CSafeLoader combines them."""

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


def measure(root: Node, doc: int, *, max_aliases: int, max_nodes: int) -> int:
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


SEPARATOR = "---"


def split_documents(text: str) -> Iterator[tuple[int, str]]:
    """(0-based line where it starts, text) of each document, split exactly where kubectl splits.

    kubectl (``k8s.io/apimachinery/pkg/util/yaml.YAMLReader``) cuts the file at every line
    that starts with ``---`` before any YAML parsing, and refuses such a line if anything but
    a comment follows the dashes (``--- !!map``, ``--- {a: 1}``, ``----``).  A leading part
    with nothing but blanks and comments is not a document.
    """
    lines = text.split("\n")
    start, count = 0, 0
    for i, line in enumerate(lines):
        if not line.startswith(SEPARATOR):
            continue
        opens = start > 0 or _has_content(lines[:i])
        rest = line[len(SEPARATOR) :].strip()
        if rest and not rest.startswith("#"):
            raise YAMLLimitError(
                f"invalid document separator {line.rstrip()!r}: only a comment may follow '---' on its line "
                "(kubectl refuses this too); put the content on the next line",
                count + opens + 1,
                i + 1,
            )
        if opens:
            count += 1
            yield start, "\n".join(lines[start:i]) + "\n"
        start = i + 1
    if start > 0 or _has_content(lines):
        yield start, "\n".join(lines[start:])


def _has_content(lines: list[str]) -> bool:
    return any((s := line.strip().lstrip("\ufeff")) and not s.startswith("#") for line in lines)


def load_all(text: str, *, max_aliases: int, max_nodes: int) -> list[Any]:
    """Every document of ``text`` (``None`` for an empty one), guarded as the module docstring says.

    Raises ``yaml.YAMLError`` (with ``problem_mark`` counted from the start of ``text`` and
    ``doc`` set to the document number) for syntax errors and YAMLLimitError for refused
    documents.
    """
    docs: list[Any] = []
    for offset, chunk in split_documents(text):
        doc = len(docs) + 1
        try:
            docs.append(_load_quote_escapes(chunk, doc, offset=offset, max_aliases=max_aliases, max_nodes=max_nodes))
        except YAMLLimitError as e:
            e.doc = e.doc or doc
            raise
        except yaml.MarkedYAMLError as e:
            directive = next((i for i, line in enumerate(chunk.split("\n")) if line.startswith("%")), None)
            if directive is not None:
                raise YAMLLimitError(
                    "YAML directives (%YAML, %TAG) cannot be used: kubectl cuts the file at '---' before parsing, "
                    "which separates a directive from its document",
                    doc,
                    directive + 1 + offset,
                ) from None
            e.context_mark, e.problem_mark = _shift(e.context_mark, offset), _shift(e.problem_mark, offset)
            e.doc = doc  # type: ignore[attr-defined]
            raise
    return docs


def _only_document(loader: Loader, doc: int, offset: int) -> None:
    """Refuse anything after the first document of a part: kubectl parses only the first one."""
    try:
        extra = loader.get_node() if loader.check_node() else None
        found, line = extra is not None, None if extra is None else extra.start_mark.line
    except yaml.MarkedYAMLError as e:  # libyaml wants '---' before a second document
        found, line = True, None if e.problem_mark is None else e.problem_mark.line
    if found:
        raise YAMLLimitError(
            "more YAML follows the document end marker '...' without a '---' line; kubectl would silently ignore it: "
            "start a new document with '---' or remove it",
            doc,
            None if line is None else line + 1 + offset,
        )


def _shift(mark: Any, lines: int) -> Any:
    """``mark`` moved down by ``lines`` (the C parser's marks are read-only)."""
    if mark is None or not lines:
        return mark
    return yaml.Mark(mark.name, mark.index, mark.line + lines, mark.column, None, None)  # type: ignore[arg-type]


def _load_quote_escapes(chunk: str, doc: int, *, offset: int, max_aliases: int, max_nodes: int) -> Any:
    """``_load_one``, reading ``\\'`` in a double-quoted scalar as go-yaml v2 does (a quote).

    libyaml stops at such an escape; the backslash is removed there and the part read
    again, a bounded number of times (a file full of them is refused, not parsed forever).
    """
    for _ in range(_QUOTE_ESCAPE_FIXES):
        try:
            return _load_one(chunk, doc, offset=offset, max_aliases=max_aliases, max_nodes=max_nodes)
        except yaml.scanner.ScannerError as e:
            at = e.problem_mark.index if e.problem_mark is not None else -1
            if e.problem != "found unknown escape character" or chunk[at : at + 2] != "\\'":
                raise
            chunk = chunk[:at] + chunk[at + 1 :]
    return _load_one(chunk, doc, offset=offset, max_aliases=max_aliases, max_nodes=max_nodes)


def _load_one(chunk: str, doc: int, *, offset: int, max_aliases: int, max_nodes: int) -> Any:
    """The one document kubectl reads from one ``---``-separated part of a file."""
    loader = Loader(chunk)
    loader.doc, loader.line_offset, loader.source = doc, offset, chunk
    try:
        if not loader.check_node():
            return None
        node = loader.get_node()
        _only_document(loader, doc, offset)
        if node is None:
            return None
        try:
            measure(node, doc, max_aliases=max_aliases, max_nodes=max_nodes)
        except YAMLLimitError as e:
            e.line = None if e.line is None else e.line + offset
            raise
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style, no line folding, multi-line strings as ``|`` blocks (what kustomize writes).

    Its resolver is the loader's, so a string that kubectl would read as something else
    (``y``, ``0o17``, ``1e3``, ``2024-01-01``, ``<<``) is quoted.
    """

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        return resolve_tag(kind, value, implicit)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump(obj: Any) -> str:
    """One object as block YAML that ``load_all`` reads back to an equal object."""
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=2**31 - 1, default_flow_style=False
    )
