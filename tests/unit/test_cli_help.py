"""Every command's --help shows an example, and the completion functions are wired to every LAB, HOST and
GUEST parameter (what they offer is tested against a real LXD in tests/integration/test_outputs.py)."""

import click
import pytest
from click.testing import CliRunner

from lxdkvm.cli import outputs as outputcli
from lxdkvm.cli.app import main


def commands(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


ALL = list(commands(main))


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "lxdkvm")
def test_help_shows_an_example(path):
    done = CliRunner().invoke(main, [*path, "--help"], terminal_width=100)
    assert done.exit_code == 0, done.output
    examples = [line.strip() for line in done.output.splitlines() if line.strip().startswith("Example")]
    assert examples, f"`lxdkvm {' '.join(path)} --help` has no example:\n{done.output}"
    following = done.output.split("Example", 1)[1]
    assert "lxdkvm" in following, "an example shows a command line"


def test_the_command_set_is_not_empty():
    names = {" ".join(p) for p, _ in ALL}
    assert {"up", "down", "status", "graph", "exec", "shell", "profile render", "image bake"} <= names


@pytest.mark.parametrize("path,command", [(p, c) for p, c in ALL if not isinstance(c, click.Group)],
                         ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_lab_host_and_guest_parameters_complete(path, command):
    for param in command.params:
        if param.name in outputcli.COMPLETERS:
            assert param._custom_shell_complete is not None, f"lxdkvm {' '.join(path)}: {param.name}"


def test_completion_never_raises_and_offers_files_for_a_lab(monkeypatch):
    monkeypatch.setattr(outputcli, "COMPLETION_TIMEOUT", 0.01)
    items = outputcli.complete_lab(None, None, "lab")
    assert items[-1].type == "file" and items[-1].value == "lab"
    assert outputcli._in_time(lambda: 1 / 0, ["nothing"]) == ["nothing"]
