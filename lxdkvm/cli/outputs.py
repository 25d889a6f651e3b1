"""`lxdkvm graph` and shell completion: outputs for people. Parse, call the library, print.

The library (`graph`, `lab`, `labfile`) is imported inside each command and completion function, so
`lxdkvm --help` stays fast (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from ..errors import LxdkvmError

FORMATS = ("mermaid", "dot", "svg", "png")
TEXT_FORMATS = ("mermaid", "dot")
SUFFIX_FORMAT = {".mmd": "mermaid", ".mermaid": "mermaid", ".md": "mermaid", ".dot": "dot", ".gv": "dot",
                 ".svg": "svg", ".png": "png"}
COMPLETION_TIMEOUT = 2.0  # seconds: a completion that cannot ask LXD in time offers what it has


def example(*commands: str) -> str:
    """A command's help epilog: its examples, kept as written (click rewraps other paragraphs)."""
    return "\b\nExample" + ("s" if len(commands) > 1 else "") + ":\n" + "\n".join(f"  {c}" for c in commands)


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


def lab_names() -> list[str]:
    """Labs that are up: LXD projects named lxdkvm-*. Empty when LXD does not answer."""
    def ask() -> list[str]:
        from ..labfile.topology import PROJECT_PREFIX
        from ..lxd import Lxd, socket_path

        if not Path(socket_path()).exists():
            return []
        names = Lxd().project_names()
        return sorted(n.removeprefix(PROJECT_PREFIX) for n in names if n.startswith(PROJECT_PREFIX))

    return _in_time(ask, [])


def host_names(lab: str | None) -> list[str]:
    """The instances of LAB's project (LAB: a lab file, a lab name, None for the default lab)."""
    def ask() -> list[str]:
        from ..lab import pipeline as lab_mod
        from ..labfile import topology as t
        from ..lxd import LabLxd, socket_path

        if not Path(socket_path()).exists():
            return []
        return sorted(LabLxd(t.project_name(lab_mod.lab_name(lab))).instances())

    return _in_time(ask, [])


def guest_names(lab: str | None) -> list[str]:
    """Guests of LAB: from its file when LAB is one (or the default lab), and those the live status lists."""
    def ask() -> list[str]:
        from ..labfile import read

        names: set[str] = set()
        if lab is None or Path(lab).is_file():
            text, source = read.read(lab)
            parsed, _, _ = read.parse(text, source)
            names |= {g.name for g in (parsed.guests if parsed else ())}
        return sorted(names)

    def live() -> list[str]:
        from ..lab import pipeline as lab_mod
        from ..lxd import socket_path

        if not Path(socket_path()).exists():
            return []
        status = lab_mod.status(lab)
        return sorted({g["name"] for h in status.get("hosts", []) for g in h.get("guests", [])})

    return sorted(set(_in_time(ask, [])) | set(_in_time(live, [])))


def _matching(names: list[str], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_lab(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A LAB argument: labs that are up, and files (a lab file)."""
    return [*_matching(lab_names(), incomplete), CompletionItem(incomplete, type="file")]


def complete_host(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A HOST argument: the hosts of the lab given by --lab (or the default lab)."""
    return _matching(host_names(ctx.params.get("lab")), incomplete)


def complete_guest(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A GUEST argument: the guests of the lab given by --lab (its file, and its live status)."""
    return _matching(guest_names(ctx.params.get("lab")), incomplete)


def complete_host_or_guest(ctx: click.Context, param: click.Parameter,
                           incomplete: str) -> list[CompletionItem]:
    return _matching(sorted(set(host_names(ctx.params.get("lab"))) | set(guest_names(ctx.params.get("lab")))),
                     incomplete)


# ---------------------------------------------------------------------------------------- graph
def _live_status(name: str) -> dict | None:
    """`lab.status(name)` when LXD answers and the lab exists, else None."""
    from ..lab import pipeline as lab_mod
    from ..lxd import socket_path

    if not Path(socket_path()).exists():
        return None
    try:
        status = lab_mod.status(name)
    except LxdkvmError:
        return None
    return status if status.get("exists") else None


def lab_graph(lab: str | None, live: bool):
    """The graph of LAB: a lab file (None: the default lab) annotated with its live state when it is up,
    or a lab name, drawn from its live state alone."""
    from ..labfile import checks, read
    from ..labfile import topology as t
    from ..outputs import graph

    if lab is not None and not Path(lab).is_file():
        from ..lab import pipeline as lab_mod

        name = lab_mod.lab_name(lab)  # refuses a path that does not exist and a bad name
        status = _live_status(name)
        if status is None:
            raise LxdkvmError(f"lab {name} is not up (or LXD does not answer): give its lab file to draw it "
                              "from the file")
        return graph.from_status(status)
    text, source = read.read(lab)
    parsed, problems, _ = read.parse(text, source)
    if parsed is not None:  # drawing changes nothing: no --allow-* needed to draw any lab file
        everything = checks.Allowances(unconfined=True, host_devices=True, cgnat=True)
        problems += checks.check(parsed, checks.Machine(allow=everything))
    if problems:
        raise t.LabInvalid(source, problems)
    status = _live_status(parsed.name) if live else None
    return graph.build(parsed, status)


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


def register(main: click.Group, out, err, errors) -> None:
    """`graph`, and completion for the commands already registered (call it last)."""
    attach_completion(main)

    @main.command(epilog=example("lxdkvm graph labs/default.yaml --format png -o lab.png",
                                 "lxdkvm graph my-lab > my-lab.mmd"))
    @click.argument("lab", required=False, shell_complete=complete_lab)
    @click.option("-f", "--format", "fmt", type=click.Choice(FORMATS),
                  help="mermaid (Markdown), dot (Graphviz text), svg or png (drawn by Graphviz's `dot`) "
                       "[default: from -o's suffix, else mermaid].")
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
        from ..outputs import graph as graph_mod

        fmt = _format(fmt, output)
        with errors():
            drawing = lab_graph(lab, live)
            text = graph_mod.mermaid(drawing) if fmt == "mermaid" else graph_mod.dot(drawing)
            if fmt in TEXT_FORMATS:
                data = text.encode()
            else:
                from ..outputs import graphviz

                data = graphviz.render(text, fmt)
        if output is None and fmt not in TEXT_FORMATS and sys.stdout.isatty():
            output = Path(f"{drawing.lab}.{fmt}")
        if output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        try:
            output.write_bytes(data)
        except OSError as exc:
            from rich.markup import escape

            err.print(f"[bold red]error:[/] cannot write {escape(str(output))}: {escape(exc.strerror or '')}",
                      highlight=False)
            sys.exit(1)
        source = "live" if drawing.live else "from the lab file"
        err.print(f"wrote {output} ({fmt}, {source})", highlight=False, markup=False)
