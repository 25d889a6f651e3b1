"""What every command shares: the consoles, turning library errors into one message and an exit status,
progress lines and warnings, and the run's settings and session (one connection to the daemon per command).

Text that came from a lab host or guest (names, states, command output, error messages that quote it)
reaches the terminal only through `plain` (control and bidi characters shown as escapes, so an escape
sequence or a carriage return is seen, never executed) and, where rich reads markup, `safe` (that and
markup escaped, so `[bold]` is text)."""

from __future__ import annotations

import dataclasses
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field

import click
from rich.console import Console
from rich.markup import escape

from ..errors import LxdkvmError
from ..labfile.topology import LabInvalid
from ..settings import Settings

# Wide enough for the doctor's evidence when the output is a file or a CI log.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
STATUS_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}
_warned: set[str] = set()


def plain(text: object, limit: int = 4000, lines: int = 200) -> str:
    """TEXT (from a host, a guest, a file) for the terminal: control, format and line-separator characters
    as visible escapes, its last LINES lines, at most LIMIT characters."""
    from ..readback import shown

    return shown(str(text), limit, lines)


def safe(text: object, limit: int = 4000, lines: int = 200) -> str:
    """`plain` TEXT for rich markup: its own markup escaped too."""
    return escape(plain(text, limit, lines))


def warn(message: str) -> None:
    """A warning on stderr, each one once per command (e.g. a value a host reported that was left out)."""
    if message not in _warned:
        _warned.add(message)
        err.print(f"[yellow]warning:[/] {safe(message)}", highlight=False)


# Every exit status a command ends with (docs/json.md has the table; tests/unit/test_json_documents.py
# fails on one the CLI uses that the table does not list).
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def asks_for_json(argv: list[str]) -> bool:
    """Whether a command line asks for JSON: --json, or a format option (--format, -f) of json, before `--`."""
    argv = argv[:argv.index("--")] if "--" in argv else argv
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return "--json" in argv or any(a in ("--format", "-f") and b == "json" for a, b in pairs) or \
        any(a in ("--format=json", "-fjson") for a in argv)


def print_json(document: dict) -> None:
    """The command's one JSON document on stdout (ASCII only: what hosts said arrives escaped)."""
    click.echo(json.dumps(document, indent=2))


@contextmanager
def errors(as_json: bool = False):
    """Library errors become one red line on stderr and exit status 1 (a bad lab file: every problem with
    its file, line and key, and exit status 2). AS_JSON: also the error document on stdout, the command's
    only output there (`outputs.documents`), and so also for an error lxdkvm did not expect."""
    from ..outputs import documents

    try:
        yield
    except LabInvalid as exc:  # every problem, with file:line and key; exit 2 like a usage error
        err.print(f"[bold red]error:[/] {safe(exc.source)}: {len(exc.problems)} problem(s), "
                  "nothing was changed", highlight=False)
        err.print(exc.report(), highlight=False, markup=False)
        _say(as_json and documents.invalid(exc))
        sys.exit(EXIT_INVALID)
    except LxdkvmError as exc:
        # soft_wrap: LXD's messages stay whole lines in logs, whatever the terminal's width
        err.print(f"[bold red]error:[/] {safe(exc)}", highlight=False, soft_wrap=True)
        _say(as_json and documents.error("failed", str(exc)))
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        message = "run the same command again to finish, or `lxdkvm down` to remove what was made"
        err.print(f"[bold red]interrupted:[/] {message}", highlight=False)
        _say(as_json and documents.error("interrupted", message))
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if not as_json:
            raise
        err.print_exception()  # a bug: its traceback for the report, and still one document on stdout
        _say(documents.error("internal", f"{type(exc).__name__}: {exc}"))
        sys.exit(EXIT_FAILED)


def _say(document: dict | bool) -> None:
    """The error DOCUMENT on stdout, when the command was asked for JSON (else DOCUMENT is False)."""
    if document:
        print_json(document)


def progress(message: str) -> None:
    err.print(f"[dim]·[/] {safe(message)}", highlight=False)


@dataclass
class Run:
    """What this invocation was asked to talk to (`lxdkvm --daemon … --lxd-dir …`), and its session."""
    settings: Settings = field(default_factory=Settings.from_env)
    _session: object = None

    def session(self):
        if self._session is None:
            from ..lxd.session import Session

            self._session = Session(self.settings)
        return self._session


def run() -> Run:
    return click.get_current_context().ensure_object(Run)


def session():
    """The command's session: made once, at first use, from the run's settings."""
    return run().session()


def _choose_daemon(ctx: click.Context, _param, value: str | None) -> str | None:
    if value:
        chosen = ctx.ensure_object(Run)
        chosen.settings = dataclasses.replace(chosen.settings, daemon=value)
    return value


def daemon_option(func):
    return click.option("--daemon", type=click.Choice(["lxd", "incus"]), expose_value=False,
                        callback=_choose_daemon, is_eager=True,
                        help="Talk to LXD or Incus [default: $LXDKVM_DAEMON, else LXD where it is "
                             "installed, else Incus where only it is].")(func)


def example(*commands: str) -> str:
    """A command's help epilog: its examples, kept as written (click rewraps other paragraphs)."""
    return "\b\nExample" + ("s" if len(commands) > 1 else "") + ":\n" + "\n".join(f"  {c}" for c in commands)
