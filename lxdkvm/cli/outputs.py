"""`lxdkvm graph` and shell completion: outputs for people. Parse, call the library, print.

The library (`graph`, `lab`, `labfile`) is imported inside each command and completion function, so
`lxdkvm --help` stays fast (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from ..errors import LxdkvmError
from .common import Run, err, errors, example, session, warn

FORMATS = ("mermaid", "dot", "svg", "png", "json")
TEXT_FORMATS = ("mermaid", "dot", "json")
SUFFIX_FORMAT = {".mmd": "mermaid", ".mermaid": "mermaid", ".md": "mermaid", ".dot": "dot", ".gv": "dot",
                 ".svg": "svg", ".png": "png", ".json": "json"}
COMPLETION_TIMEOUT = 2.0  # seconds: a completion that cannot ask LXD in time offers what it has


# ---------------------------------------------------------------------------------------- completion
def _in_time(ask, default):
    """ASK() if it answers within COMPLETION_TIMEOUT and raises nothing, else DEFAULT: completion must
    never hang a shell or print a traceback into it."""
    box = [default]

    def run() -> None:
        try:
            box[0] = ask()
        except Exception:  # noqa: BLE001 - any failure (LXD down, bad file) means "nothing to offer"
            box[0] = default

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(COMPLETION_TIMEOUT)
    return box[0]


def _answering(sess) -> bool:
    return sess is not None and Path(sess.daemon.socket).exists()


def lab_names(sess) -> list[str]:
    """Labs that are up: projects named lxdkvm-*. Empty when the daemon does not answer."""
    def ask() -> list[str]:
        from ..labfile.topology import PROJECT_PREFIX

        if not _answering(sess):
            return []
        return sorted(n.removeprefix(PROJECT_PREFIX) for n in sess.projects.names() if n.startswith(PROJECT_PREFIX))

    return _names(_in_time(ask, []), "lab_name")


def host_names(sess, lab: str | None) -> list[str]:
    """The instances of LAB's project (LAB: a lab file, a lab name, None for the default lab)."""
    def ask() -> list[str]:
        from ..lab.load import lab_name
        from ..labfile import topology as t

        if not _answering(sess):
            return []
        return sorted(sess.lab(t.project_name(lab_name(lab))).instances.all())

    return _names(_in_time(ask, []), "host_name")


def guest_names(sess, lab: str | None) -> list[str]:
    """Guests of LAB: from its file when LAB is one (or the default lab), and those the live status lists."""
    def ask() -> list[str]:
        from ..labfile import read

        names: set[str] = set()
        if lab is None or Path(lab).is_file():
            parsed, _problems, _source = read.load(lab)
            names |= {g.name for g in (parsed.guests if parsed else ())}
        return sorted(names)

    def live() -> list[str]:
        from ..lab import pipeline

        if not _answering(sess):
            return []
        return sorted({g.name for g in pipeline.status(sess, lab).guests})

    return _names(sorted(set(_in_time(ask, [])) | set(_in_time(live, []))), "guest_name")


def _names(found: list[str], rule: str) -> list[str]:
    """Only FOUND names that follow RULE (a `readback` check): a completion is typed into a shell line."""
    from .. import readback

    return [name for name in found if getattr(readback, rule)(name)]


def _session(ctx: click.Context):
    """The session for a completion (made in the shell's thread: click's context is per thread), or None
    when the daemon settings are wrong."""
    try:
        return (ctx.ensure_object(Run) if ctx is not None else Run()).session()
    except LxdkvmError:
        return None


def _matching(names: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_lab(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A LAB argument: labs that are up, and files (a lab file)."""
    return [*_matching(lab_names(_session(ctx)), incomplete), CompletionItem(incomplete, type="file")]


def complete_host(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A HOST argument: the hosts of the lab given by --lab (or the default lab)."""
    return _matching(host_names(_session(ctx), ctx.params.get("lab")), incomplete)


def complete_guest(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A GUEST argument: the guests of the lab given by --lab (its file, and its live status)."""
    return _matching(guest_names(_session(ctx), ctx.params.get("lab")), incomplete)


def complete_host_or_guest(ctx: click.Context, param: click.Parameter,
                           incomplete: str) -> list[CompletionItem]:
    sess, lab = _session(ctx), ctx.params.get("lab")
    return _matching(sorted(set(host_names(sess, lab)) | set(guest_names(sess, lab))), incomplete)


# ---------------------------------------------------------------------------------------- graph
def _format(fmt: str | None, output: Path | None) -> str:
    if fmt:
        return fmt
    if output is not None and output.suffix.lower() in SUFFIX_FORMAT:
        return SUFFIX_FORMAT[output.suffix.lower()]
    return "mermaid"


COMPLETERS = {"lab": complete_lab, "host": complete_host, "guest": complete_guest, "to": complete_host}


def attach_completion(group: click.Group) -> None:
    """Give every LAB, HOST and GUEST parameter of every command (and `migrate --to`) its completion, for
    commands registered before this runs that did not choose their own. Click keeps a parameter's
    completion function in `_custom_shell_complete` (set from `shell_complete=`)."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            attach_completion(command)
            continue
        for param in command.params:
            if param.name in COMPLETERS and getattr(param, "_custom_shell_complete", None) is None:
                param._custom_shell_complete = COMPLETERS[param.name]


@click.command(epilog=example("lxdkvm graph labs/default.yaml --format png -o lab.png",
                             "lxdkvm graph my-lab > my-lab.mmd"))
@click.argument("lab", required=False, shell_complete=complete_lab)
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS),
              help="mermaid (Markdown), dot (Graphviz text), svg or png (drawn by Graphviz's `dot`), or "
                   "json (the graph's model: schemas/graph.schema.json) [default: from -o's suffix, else "
                   "mermaid].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file [default: standard output; a picture on a terminal goes to "
                   "LAB.FORMAT].")
@click.option("--live/--no-live", default=True, show_default=True,
              help="Annotate with the lab's live state (hosts' state and readiness, DHCP leases, guests) "
                   "when it is up.")
def graph(lab, fmt, output, live) -> None:
    """Draw a lab: networks (subnet, gateway, NAT or isolated), hosts, guests inside their hosts, and
    each NIC's address. LAB is a lab file (drawn from the file, with live state when the lab is up) or
    the name of a lab that is up (drawn from LXD)."""
    fmt = _format(fmt, output)
    with errors(fmt == "json"):
        drawing, data = _drawn(lab, live, fmt)
    if output is None and fmt not in TEXT_FORMATS and sys.stdout.isatty():
        output = Path(f"{drawing.lab}.{fmt}")
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    with errors(fmt == "json"):
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise LxdkvmError(f"cannot write {output}: {exc.strerror or exc}") from exc
    source = "live" if drawing.live else "from the lab file"
    err.print(f"wrote {output} ({fmt}, {source})", highlight=False, markup=False)


def _drawn(lab, live: bool, fmt: str):
    """(the graph's model, its bytes in FMT)."""
    from ..outputs import documents, graphtext
    from ..outputs import graph as graph_mod

    drawing = graph_mod.draw(session(), lab, live)
    for warning in drawing.warnings:
        warn(warning)
    if fmt == "json":
        return drawing, (json.dumps(documents.graph(drawing), indent=2) + "\n").encode()
    text = graphtext.mermaid(drawing) if fmt == "mermaid" else graphtext.dot(drawing)
    if fmt in TEXT_FORMATS:
        return drawing, text.encode()
    from ..outputs import graphviz

    return drawing, graphviz.render(text, fmt)


COMMANDS = [graph]
