"""What hosts and guests say reaches a terminal as text: an escape sequence, a carriage return or a bidi
override is shown as a visible escape (never a colour, a cleared screen or a cursor move), and rich markup
such as `[bold]` is shown as written (never a style). Rendered on a rich Console that is a terminal."""

import io
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

from lxdkvm.cli import common, views
from lxdkvm.cli import guests as guestcli
from lxdkvm.cli import lab as labcli
from lxdkvm.errors import LxdkvmError
from lxdkvm.hosts.readiness import StageFailed
from lxdkvm.lab.plan import Action, Plan
from lxdkvm.lab.status import GuestStatus, HostStatus, LabStatus, NetworkStatus
from lxdkvm.lab.verify import Check

EVIL = "\x1b[2J\x1b[31mred\x1b]0;title\x07[bold]loud[/bold]\rback\u202eflip"
ESCAPES = ("\\u001b[2J", "\\u001b[31mred", "[bold]loud[/bold]", "\\u000d", "\\u202eflip")
OUR_STYLES = re.compile(r"\x1b\[[0-9;]*m")  # what rich itself writes: colours, bold (SGR)


def terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=400, color_system="standard"), buffer


def assert_shown_not_run(output: str) -> None:
    """Every part of EVIL is there as visible text; no control character of it reached the terminal."""
    text = OUR_STYLES.sub("", output)
    for shown in ESCAPES:
        assert shown in text, (shown, text)
    assert not any(c in text for c in ("\x1b", "\x07", "\r", "\u202e")), repr(text)
    assert "\x1b[1mloud" not in output  # [bold] did not become bold


def hostile_status() -> LabStatus:
    """A status made without `checked` (which would leave all this out): the views must hold on their own."""
    guest = GuestStatus(f"vm{EVIL}", "kvm-1", f"running{EVIL}", True, addresses={"mgmt": [f"10.0.0.5/24{EVIL}"]})
    host = HostStatus(f"kvm-1{EVIL}", f"Running{EVIL}", True, {"mgmt": [f"10.0.0.2/24{EVIL}"]}, (guest,),
                      member=f"m1{EVIL}")
    return LabStatus("my-lab", "lxdkvm-my-lab", True, (NetworkStatus("mgmt", f"br{EVIL}", "10.0.0.0/24", "none"),),
                     (host,))


def test_the_status_table_shows_hostile_names_as_text():
    console, buffer = terminal()
    console.print(views.status_view(hostile_status()))
    assert_shown_not_run(buffer.getvalue())


def test_progress_lines_and_the_live_table_show_hostile_text(monkeypatch):
    buffer = io.StringIO()
    progress = views.Progress(Console(file=buffer, force_terminal=False, width=400))
    progress(f"kvm-1{EVIL}", f"stage {EVIL}")
    progress("lab", f"lab says {EVIL}")
    assert_shown_not_run(buffer.getvalue())
    console, buffer = terminal()
    live = views.Progress(console)
    live(f"kvm-1{EVIL}", f"stage {EVIL}")
    console.print(live._table())
    assert_shown_not_run(buffer.getvalue())


def test_a_plan_shows_hostile_names_reasons_and_warnings(monkeypatch):
    console, buffer = terminal()
    errors, err_buffer = terminal()
    monkeypatch.setattr(common, "err", errors)
    plan = Plan("my-lab", "lxdkvm-my-lab", [Action("delete", "guest", f"vm{EVIL}", f"not in the lab file {EVIL}")],
                [f"conflict {EVIL}"], [f"kvm-1: warning {EVIL}"])
    views.print_plan(console, plan)
    assert_shown_not_run(buffer.getvalue())
    assert_shown_not_run(err_buffer.getvalue())


def test_errors_and_warnings_quote_hosts_as_text(monkeypatch):
    console, buffer = terminal()
    monkeypatch.setattr(common, "err", console)
    monkeypatch.setattr(common, "_warned", set())
    common.warn(f"kvm-1: {EVIL}")
    common.warn(f"kvm-1: {EVIL}")  # once
    assert buffer.getvalue().count("warning:") == 1
    with pytest.raises(SystemExit):
        with common.errors():
            raise LxdkvmError(f"kvm-1: `virsh list` failed:\n{EVIL}")
    assert_shown_not_run(buffer.getvalue())
    assert "\nkvm-1" not in buffer.getvalue() and "failed:\n" in buffer.getvalue()  # its lines are kept


def test_a_failed_stage_shows_the_hosts_log_tail_escaped_and_bounded():
    log = "\n".join(f"line {i}" for i in range(1000)) + f"\n{EVIL}"
    message = str(StageFailed("kvm-1", "cloud-init", f"failed {EVIL}", log))
    assert "\x1b" not in message and "\r" not in message and "\\u001b[2J" in message
    assert "line 999" in message and "line 900" not in message
    console, buffer = terminal()
    console.print(common.safe(message))
    assert_shown_not_run(buffer.getvalue())


def test_the_verify_table_shows_hostile_evidence_as_text(monkeypatch):
    from lxdkvm.lab import pipeline

    console, buffer = terminal()
    monkeypatch.setattr(guestcli, "out", console)
    checks = [Check(f"host kvm-1{EVIL}", f"probe {EVIL}", "PASS", f"evidence {EVIL}"),
              Check("lab", "what hosts report", "WARN", f"kvm-1: left out {EVIL}")]
    monkeypatch.setattr(pipeline, "verify", lambda *_a: (type("Lab", (), {"name": "my-lab"}), checks))
    done = CliRunner().invoke(guestcli.verify, ["my-lab"])
    assert done.exit_code == 0, done.output
    assert_shown_not_run(buffer.getvalue())


def test_a_migration_summary_shows_hostile_values_as_text(monkeypatch):
    from lxdkvm.lab import guests as lab_guests

    console, buffer = terminal()
    monkeypatch.setattr(guestcli, "out", console)
    result = {"from": f"kvm-1{EVIL}", "to": "kvm-2", "over": "10.0.0.3", "seconds": 1.0, "libvirt_ms": 1.0,
              "downtime_ms": 1.0, "memory_mib": 1.0, "disk_copied": False, "same_boot": True, "running": True,
              "address": f"10.0.0.5{EVIL}", "address_answers": True, "pings_lost": 0, "pings_sent": 5}
    monkeypatch.setattr(lab_guests, "migrate", lambda *_a, **_k: result)
    done = CliRunner().invoke(guestcli.migrate, ["my-lab", "vm-1", "--to", "kvm-2"])
    assert done.exit_code == 0, done.output
    assert_shown_not_run(buffer.getvalue())


def test_guest_exec_output_on_a_terminal_keeps_lines_and_tabs_and_shows_the_rest():
    assert guestcli.terminal_text(f"a\tb\n{EVIL}\n") == (
        "a\tb\n\\u001b[2J\\u001b[31mred\\u001b]0;title\\u0007[bold]loud[/bold]\\u000dback\\u202eflip\n")


def test_playbook_output_lines_are_shown_escaped(monkeypatch):
    from lxdkvm.clients import ansible

    seen = []

    def fake_run(_session, _lab, _playbook, on_line, on_warning):
        on_warning(f"kvm-1: left out {EVIL}")
        on_line(f"ok: [kvm-1] => {EVIL}")
        return ansible.PlaybookRun(ansible.playbooks_dir() / "verify.yml", 1.0, {}, "")

    console, buffer = terminal()
    monkeypatch.setattr(ansible, "run_playbook", fake_run)
    monkeypatch.setattr(labcli, "out", console)
    monkeypatch.setattr(common, "err", console)
    monkeypatch.setattr(labcli.click, "echo", lambda text, **_k: seen.append(text))
    monkeypatch.setattr(labcli, "session", lambda: None)
    labcli._playbook("my-lab", "verify.yml")
    assert_shown_not_run(seen[0] + buffer.getvalue())
