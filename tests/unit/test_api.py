"""The Python API (`lxdkvm.api`) and the pytest plugin on plain data: commands as argument lists, typed
results, the migration verdict shared with `lxdkvm migrate`, which lab file the plugin takes and what it
does with a lab, and that neither costs `import lxdkvm` a heavy library."""

from pathlib import Path

import pytest

from lxdkvm import pytest_plugin as plugin
from lxdkvm.api import ExecResult, Lab, LabInvalid, LxdkvmError, Migration, argv
from lxdkvm.guests import migration

from .test_cli_imports import HEAVY, loaded_after

LABS = Path(__file__).parent.parent / "labs"
MOVED = {  # the shape of guests.migration.migrate's result, as `lxdkvm migrate --json` prints it
    "guest": "vm-1", "from": "kvm-1", "to": "kvm-2", "over": "10.234.20.12", "live": True, "disk_copied": False,
    "seconds": 3.21, "libvirt_ms": 2900, "downtime_ms": 41, "downtime_budget_ms": 50, "within_budget": True,
    "throttle_percent": 0.0, "iterations": 3, "memory_mib": 97.0, "disk_mib": 0.0, "job": {},
    "boot_id_before": "0f8e…", "boot_id_after": "0f8e…", "same_boot": True, "running": True,
    "address": "10.234.20.51", "address_answers": True, "pings_sent": 17, "pings_lost": 0,
}


def test_a_command_is_a_list_or_a_shell_line():
    assert argv(["virsh", "list", "--all"]) == ["virsh", "list", "--all"]
    assert argv(("echo", 3)) == ["echo", "3"]
    assert argv("virsh list | wc -l") == ["sh", "-c", "virsh list | wc -l"]
    for empty in ("", "  ", [], ()):
        with pytest.raises(LxdkvmError, match="empty command"):
            argv(empty)


def test_check_returns_a_success_and_raises_with_the_exit_code_and_visible_stderr():
    ok = ExecResult(("true",), 0, "out\n", "")
    assert ok.ok and ok.check() is ok
    failed = ExecResult(("sh", "-c", "exit 3"), 3, "", "line one\nno such thing\x1b[2J\n")
    assert not failed.ok
    with pytest.raises(LxdkvmError) as caught:
        failed.check()
    assert str(caught.value) == "sh -c 'exit 3' exited 3: line one\nno such thing\\u001b[2J"  # the escape shown


def test_a_migration_is_typed_from_the_commands_document():
    moved = Migration.from_result(MOVED)
    assert (moved.guest, moved.source, moved.target, moved.over) == ("vm-1", "kvm-1", "kvm-2", "10.234.20.12")
    assert moved.downtime_ms == 41 and moved.pings_sent == 17 and moved.raw == MOVED
    assert moved.kept_running and moved.ok


@pytest.mark.parametrize(("changes", "kept", "ok"), [
    ({}, True, True),
    ({"same_boot": False}, False, False),  # rebooted on the way: not the same guest any more
    ({"address_answers": False}, True, False),
    ({"address": None, "address_answers": False}, True, True),  # nothing to ping
    ({"same_boot": None, "running": True}, True, True),  # an imported image without lxdkvm's agent
    ({"same_boot": None, "running": False}, False, False),
])
def test_the_api_and_the_command_give_a_move_the_same_verdict(changes, kept, ok):
    result = {**MOVED, **changes}
    assert (migration.kept_running(result), migration.succeeded(result)) == (kept, ok)
    moved = Migration.from_result(result)
    assert (moved.kept_running, moved.ok) == (kept, ok)


def test_load_refuses_a_bad_lab_file_with_the_commands_exact_messages():
    for name in ("03-missing-name", "01-yaml-syntax"):
        path = LABS / "invalid" / f"{name}.yaml"
        with pytest.raises(LabInvalid) as caught:
            Lab.load(path)
        expected = (LABS / "invalid" / f"{name}.expected").read_text().strip()
        assert caught.value.report().replace(str(path.parent) + "/", "") == expected
        assert caught.value.problems and all(p.line for p in caught.value.problems)


def test_the_lab_file_comes_from_the_command_line_else_the_ini_file(tmp_path):
    here, ini = tmp_path / "run", tmp_path / "suite"
    assert plugin.lab_file("labs/a.yaml", "lab.yaml", ini, here) == here / "labs/a.yaml"
    assert plugin.lab_file(None, " lab.yaml ", ini, here) == ini / "lab.yaml"
    assert plugin.lab_file(None, "lab.yaml", None, here) == here / "lab.yaml"
    assert plugin.lab_file(None, "", ini, here) is None


def test_the_fixture_reuses_only_an_unchanged_lab_and_owns_only_what_it_creates():
    assert plugin.decide(exists=False, plan_empty=False) == plugin.CREATE
    assert plugin.decide(exists=True, plan_empty=True) == plugin.REUSE
    assert plugin.decide(exists=True, plan_empty=False) == plugin.CONVERGE


def test_import_lxdkvm_the_api_and_the_plugin_load_no_heavy_library():
    loaded = loaded_after("import lxdkvm, lxdkvm.pytest_plugin; from lxdkvm import Lab, ExecResult")
    assert "lxdkvm.api" in loaded and "pytest" in loaded  # the check itself works
    assert sorted(m for m in HEAVY if m in loaded) == []
    assert "lxdkvm.api" not in loaded_after("import lxdkvm")  # only on first use of a name


pytest_plugins = ["pytester"]


def test_a_suite_without_the_fixture_never_imports_lxdkvm_and_one_without_a_lab_file_is_told(pytester):
    pytester.makepyfile(test_plain="""
        import sys

        def test_plain():
            assert "lxdkvm.api" not in sys.modules and "pylxd" not in sys.modules
        """)
    pytester.runpytest_subprocess("test_plain.py").assert_outcomes(passed=1)
    pytester.makepyfile(test_lab="def test_lab(lxdkvm_lab):\n    pass\n")
    told = pytester.runpytest_subprocess("test_lab.py")
    told.assert_outcomes(errors=1)
    told.stdout.fnmatch_lines(["*lxdkvm_lab: no lab file: give --lxdkvm-lab FILE or set lxdkvm_lab in pytest.ini*"])
