"""Graphviz's `dot`: dot text → SVG or PNG bytes. The one place lxdkvm runs it."""

from __future__ import annotations

import shutil
import subprocess

from ..errors import LxdkvmError

INSTALL = "apt-get install graphviz"
TIMEOUT = 60  # seconds; a lab graph takes well under one


class GraphvizMissing(LxdkvmError):
    """`dot` is not on PATH."""


def render(dot_text: str, fmt: str) -> bytes:
    """DOT_TEXT drawn by `dot -T<fmt>` (svg, png). Raises GraphvizMissing or LxdkvmError, never a traceback's
    worth of subprocess detail."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing(f"drawing {fmt.upper()} needs Graphviz's `dot`, which is not installed: "
                              f"install it with `{INSTALL}` (Debian's package `graphviz`), or use "
                              "--format mermaid or --format dot")
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                              timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LxdkvmError(f"`dot -T{fmt}` failed: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise LxdkvmError(f"`dot -T{fmt}` failed: {message}")
    return done.stdout
