"""A lab file's bytes → plain data with the line of every key, in bounded time and memory.

Lab files are shared like topologies, so they are untrusted: whatever the bytes (binary, not UTF-8, a
FIFO, /dev/zero, 100,000 nested `[`, an alias bomb, Python tags, huge integers), the result is data or a
list of `topology.Problem`s — never an exception from the YAML library. The bounds:

- at most `MAX_BYTES` are read (`MAX_BYTES + 1` to tell that there is more, so /dev/zero ends);
- the composer stops at `MAX_DEPTH` levels of nesting (PyYAML composes recursively) and `MAX_NODES` nodes;
- building the data stops after `MAX_VALUES` values, counting every use of an alias (a "billion laughs"
  file has few nodes but expands exponentially), and refuses an alias that contains itself;
- only the plain YAML types are built: tags such as `!!python/object` or `!!binary` are problems;
- integers beyond 64 bits are problems (Python refuses to print ints of more than 4300 digits).

The worst file of `tests/labs/hostile/` is refused in about 0.3 s (PyYAML reads ~3 MB/s).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from . import topology as t

MAX_BYTES = 1 << 20  # a large lab (256 hosts, every option) is ~50 KiB
MAX_DEPTH = 32  # a lab file nests 6 levels deep
MAX_NODES = 20_000  # YAML nodes as written
MAX_VALUES = 20_000  # values once aliases are expanded
MAX_INT = 1 << 63
Loc = tuple[str | int, ...]
YAML_TAG = "tag:yaml.org,2002:"
PLAIN_TAGS = {YAML_TAG + kind for kind in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map")}
MERGE_TAG = YAML_TAG + "merge"
SYNTAX_HINTS = [("'\\t'", "indent with spaces: YAML does not allow tabs there"),
                ("another document", "a lab file is one YAML document: remove the `---` line and after")]
SIZE_HINT = "a lab file is a few KiB of YAML; is this the right file?"


class Positions(dict):
    """Line number (1-based) of every key path; a path that has none falls back to its parent's."""

    def line(self, loc: Loc) -> int:
        for end in range(len(loc), -1, -1):
            if tuple(loc[:end]) in self:
                return self[tuple(loc[:end])]
        return 1


def key_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _file_problem(message: str, hint: str, line: int = 0) -> t.Problem:
    return t.Problem("(file)", message, hint, line)


# ---------------------------------------------------------------------------------------- bytes
def _kind(mode: int) -> str | None:
    """What a path is when it is something a lab file cannot be read from."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def read_bytes(file: Path) -> bytes:
    """At most MAX_BYTES of FILE. A regular file, a FIFO (`<(...)`) or a device; raises LabInvalid."""
    source = str(file)
    try:
        info = os.stat(file)
        if kind := _kind(info.st_mode):
            raise t.LabInvalid(source, [_file_problem(f"is {kind}, not a lab file", "give the path of a lab "
                                                      "YAML file")])
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_BYTES:
            raise t.LabInvalid(source, [_file_problem(f"is {info.st_size} bytes, more than a lab file may be "
                                                      f"({MAX_BYTES} bytes)", SIZE_HINT)])
        # O_NONBLOCK: opening a FIFO that has no writer must not wait for one (reading it then says EOF)
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            os.set_blocking(fd, True)
            chunks, size = [], 0
            while size <= MAX_BYTES and (chunk := os.read(fd, MAX_BYTES + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise t.LabInvalid(source, [_file_problem(f"cannot read the lab file: {exc.strerror}",
                                                  "give the path of a lab YAML file")]) from None
    if size > MAX_BYTES:
        raise t.LabInvalid(source, [_file_problem(f"is more than {MAX_BYTES} bytes, more than a lab file may "
                                                  "be", SIZE_HINT)])
    return b"".join(chunks)


def decode(data: bytes, source: str) -> str:
    """UTF-8 text (a byte-order mark is dropped; CRLF line ends are YAML's business); raises LabInvalid."""
    def line_at(offset: int) -> int:
        return data.count(b"\n", 0, offset) + 1

    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise t.LabInvalid(source, [_file_problem("is UTF-16 or UTF-32 text", "save it as UTF-8", 1)])
    if not data.strip():
        raise t.LabInvalid(source, [_file_problem("the lab file is empty", "a lab file is a mapping with "
                                                  "name, networks and hosts; see labs/default.yaml", 1)])
    if (nul := data.find(b"\0")) >= 0:
        raise t.LabInvalid(source, [_file_problem("is binary, not text (it has NUL bytes)",
                                                  "give the path of a lab YAML file", line_at(nul))])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise t.LabInvalid(source, [_file_problem(f"is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                                                  "save the file as UTF-8", line_at(exc.start))]) from None


# ---------------------------------------------------------------------------------------- YAML
class _Bound(yaml.MarkedYAMLError):
    """A bound was reached; it carries a message, a hint and the place."""

    def __init__(self, message: str, hint: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=message, problem_mark=mark)
        self.hint = hint


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader whose composer stops at MAX_DEPTH levels and MAX_NODES nodes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = self.nodes = 0

    def compose_node(self, parent, index):
        self.depth, self.nodes = self.depth + 1, self.nodes + 1
        if self.depth > MAX_DEPTH:
            raise _Bound(f"nests deeper than {MAX_DEPTH} levels", "a lab file nests a few levels deep",
                         self.peek_event().start_mark)
        if self.nodes > MAX_NODES:
            raise _Bound(f"has more than {MAX_NODES} values", SIZE_HINT, self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _syntax_problem(exc: yaml.YAMLError, text: str) -> t.Problem:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow (control characters)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return _file_problem(f"character {char!r} is not allowed in YAML", "remove control characters",
                             text.count("\n", 0, exc.position) + 1)
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    hint = getattr(exc, "hint", "") or next((h for text, h in SYNTAX_HINTS if text in problem),
                                            "check the indentation and quoting")
    line = (mark.line + 1) if mark else 1
    return _file_problem(problem if isinstance(exc, _Bound) else f"not valid YAML: {problem}", hint, line)


class _Builder:
    """Plain data from composed nodes, with the line of every key path; bounded (see the module doc)."""

    def __init__(self, positions: Positions, problems: list[t.Problem]) -> None:
        self.positions, self.problems = positions, problems
        self.constructor = yaml.SafeLoader("")
        self.values = 0
        self.active: set[int] = set()  # collections being built (an alias back into one is a loop)

    def problem(self, loc: Loc, message: str, hint: str, node: yaml.Node) -> None:
        self.problems.append(t.Problem(key_path(loc), message, hint, node.start_mark.line + 1))

    def plain(self, node: yaml.Node, loc: Loc) -> bool:
        if node.tag in PLAIN_TAGS:
            return True
        tag = node.tag.replace(YAML_TAG, "!!", 1)
        self.problem(loc, f"YAML tag '{tag}' is not allowed",
                     "a lab file holds plain strings, numbers, booleans, lists and mappings", node)
        return False

    def scalar(self, node: yaml.Node, loc: Loc) -> object:
        if not self.plain(node, loc):
            return None
        try:  # a 5000-digit integer is a ValueError in Python 3.11
            value = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError):
            value = MAX_INT if node.tag == YAML_TAG + "int" else None
            if value is None:
                self.problem(loc, "cannot read this value", "", node)
                return None
        if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT < value < MAX_INT:
            self.problem(loc, "the number is too large", "numbers in a lab file fit in 64 bits", node)
            return None
        return value

    def build(self, node: yaml.Node, loc: Loc, depth: int = 0) -> object:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Bound(f"has more than {MAX_VALUES} values once its aliases are expanded",
                         "use fewer aliases (`*name`), or write the values out", node.start_mark)
        if depth > MAX_DEPTH:
            raise _Bound(f"nests deeper than {MAX_DEPTH} levels", "a lab file nests a few levels deep",
                         node.start_mark)
        if id(node) in self.active:
            raise _Bound("an alias refers to a value that contains it", "an alias (`*name`) must not point "
                         "into its own anchor (`&name`)", node.start_mark)
        self.positions.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if not self.plain(node, loc):
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
            return self.mapping(node, loc, depth)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> dict:
        out: dict = {}
        merged: dict = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:  # `<<: *anchor` or `<<: [*a, *b]`: the first one wins, own keys win
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    value = self.build(source, (*loc, "<<"), depth + 1)
                    if not isinstance(value, dict):
                        self.problem(loc, "`<<` merges mappings only", "merge an anchored mapping", key_node)
                        continue
                    for key, item in value.items():
                        merged.setdefault(key, item)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                self.problem(loc, f"a key is a {kind}, not a string", "quote the key", key_node)
                continue
            said = len(self.problems)
            key = self.scalar(key_node, loc)
            if not isinstance(key, str):
                if len(self.problems) == said:  # not already said (a tag, a number too large)
                    self.problem(loc, f"key {key!r} is not a string", "quote the key", key_node)
                continue
            if key in out:
                first = self.positions[(*loc, key)]
                self.problems.append(t.Problem(key_path((*loc, key)), "duplicate key",
                                               f"it is already set on line {first}", line))
                continue
            self.positions[(*loc, key)] = line
            out[key] = self.build(value_node, (*loc, key), depth + 1)
        for key, item in merged.items():
            out.setdefault(key, item)
        return out


def read_yaml(text: str) -> tuple[object, Positions, list[t.Problem]]:
    """Plain data plus the line of every key path; every problem in the YAML layer is in the list."""
    positions = Positions()
    problems: list[t.Problem] = []
    try:
        loader = _BoundedLoader(text)  # its reader already refuses characters YAML does not allow
        root = loader.get_single_node()
        data = _Builder(positions, problems).build(root, ()) if root is not None else None
    except yaml.YAMLError as exc:
        return None, positions, [_syntax_problem(exc, text)]
    return data, positions, problems
