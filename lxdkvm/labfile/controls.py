"""No control character in any string that leaves a lab file: one pass over the plain data `yamlread`
built, before the schema, so that every key and value — lab, network, host, guest and profile names,
config keys and values, device names, keys and values, image, storage, placement, groups,
ready.console — is refused at its own line and key path when it holds one.

YAML's reader refuses most control characters written as they are, but a double-quoted string makes any
character from an escape (`"\\n"`, `"\\e"`, `"\\x85"`, `"\\u2028"`, `"\\u202e"`), and LXD writes some
values into LXC's config file one per line: a line break in `linux.sysctl.*` was a new line of that file
(`lxc.hook.pre-start`, run as root on the machine). Refused: C0 (U+0000-U+001F), DEL, C1
(U+0080-U+009F), the line and paragraph separators U+2028/U+2029, and the bidirectional controls
(U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), which make a terminal or an editor show text in
another order than it is. Only multi-line text may hold line breaks and tabs: a guest's `user_data` (as
text or as a mapping) and the config keys `keys.multiline` names (cloud-init user-data, raw.*, the
syscall lists).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from . import keys
from . import topology as t
from .yamlread import Loc, Positions, key_path

BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{BIDI}]")
CONTROL_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{BIDI}]")  # \t and \n allowed
MAX_REPORTED = 50  # a file of 20,000 such values says so 50 times, then once more
ONE_LINE_HINT = "lab file values are data: write each on one line, without control characters"
TEXT_HINT = "multi-line text may hold line breaks and tabs, and no other control character"


def kind(char: str) -> str:
    """What CHAR is, in words, with its code point."""
    code = ord(char)
    names = {0x0A: "a line break", 0x0D: "a carriage return", 0x09: "a tab", 0x1B: "an escape character",
             0x00: "a NUL character", 0x85: "a next-line character (NEL)", 0x2028: "a line separator",
             0x2029: "a paragraph separator", 0x202E: "a right-to-left override"}
    if code in names:
        name = names[code]
    elif code < 0x20 or code == 0x7F:
        name = "a control character"
    elif code <= 0x9F:
        name = "a C1 control character"
    else:
        name = "a bidirectional control"
    return f"{name} (U+{code:04X})"


def _text_allowed(loc: Loc) -> bool:
    """Whether the value at LOC is multi-line text (line breaks and tabs allowed)."""
    if len(loc) >= 3 and loc[0] == "guests" and loc[2] == "user_data":
        return True
    config = (len(loc) == 3 and loc[:2] == ("defaults", "config")) or \
        (len(loc) == 4 and loc[0] in ("hosts", "profiles") and loc[2] == "config")
    return config and isinstance(loc[-1], str) and keys.multiline(loc[-1])


def _found(text: str, loc: Loc, positions: Positions, is_key: bool) -> t.Problem | None:
    text_allowed = not is_key and _text_allowed(loc)
    match = (CONTROL_IN_TEXT if text_allowed else CONTROL).search(text)
    if match is None:
        return None
    what = "the key" if is_key else f"'{text}'"
    return t.Problem(key_path(loc), f"{what} holds {kind(match.group())}",
                     TEXT_HINT if text_allowed else ONE_LINE_HINT, positions.line(loc))


def _walk(data: object, loc: Loc, positions: Positions) -> Iterator[t.Problem]:
    if isinstance(data, str):
        if problem := _found(data, loc, positions, is_key=False):
            yield problem
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and (problem := _found(key, (*loc, key), positions, is_key=True)):
                yield problem
            yield from _walk(value, (*loc, key), positions)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _walk(item, (*loc, i), positions)


def problems(data: object, positions: Positions) -> list[t.Problem]:
    """A problem for each key or value of DATA that holds a control character (at most MAX_REPORTED)."""
    found: list[t.Problem] = []
    for problem in _walk(data, (), positions):
        if len(found) == MAX_REPORTED:
            found.append(t.Problem("(file)", f"more than {MAX_REPORTED} values hold control characters",
                                   ONE_LINE_HINT, problem.line))
            break
        found.append(problem)
    return found
