"""Every program the code, the tests and the benchmarks run on this machine is one that `lxdkvm setup` or the
tests install (or one that is there by definition): a fresh machine never meets a missing program half-way
through a run. Read from the source itself, so a new call of an unlisted program fails here."""

import ast
from pathlib import Path

import pytest

from lxdkvm.machine import programs

from .. import programs as test_programs

REPO = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((REPO / "lxdkvm").rglob("*.py")), *sorted((REPO / "tests").rglob("*.py")),
           *sorted((REPO / "benchmarks").rglob("*.py")), REPO / "tasks.py"]
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "execvp", "execvpe", "execv", "which"}
OURS = {"lxdkvm"}  # the entry point this package installs


def _is_runner(call: ast.Call) -> bool:
    """subprocess.run(...), os.execvpe(...), shutil.which(...) and the like."""
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr in RUNNERS and isinstance(func.value, ast.Name)
            and func.value.id in {"subprocess", "os", "shutil"})


def _wrappers(tree: ast.Module) -> set[str]:
    """Names of this module's functions (and lambdas bound to a name) that hand their own arguments to a
    subprocess as the command: `def _run(command): subprocess.run(command)`, `lambda *c: subprocess.run(c)`
    (not `def lxc(*args): subprocess.run(["lxc", *args])`, whose arguments are the program's)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body, name, params = node, node.name, node.args
        elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda) and len(node.targets) == 1
              and isinstance(node.targets[0], ast.Name)):
            body, name, params = node.value, node.targets[0].id, node.value.args
        else:
            continue
        passed = {a.arg for a in params.args[:1]} | ({params.vararg.arg} if params.vararg else set())
        for call in (n for n in ast.walk(body) if isinstance(n, ast.Call) and _is_runner(n) and n.args):
            first = call.args[0]
            if isinstance(first, ast.List) and first.elts and isinstance(first.elts[0], ast.Starred):
                first = first.elts[0].value
            if isinstance(first, ast.Name) and first.id in passed:
                names.add(name)
    return names


def _lists(tree: ast.Module) -> dict[str, ast.List]:
    """Variables assigned a list literal anywhere in the module (`command = ["debootstrap", ...]`)."""
    return {n.targets[0].id: n.value for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
            and isinstance(n.value, ast.List)}


def _head(arg: ast.expr, lists: dict[str, ast.List]) -> str | None:
    if isinstance(arg, ast.Name) and arg.id in lists:
        arg = lists[arg.id]
    if isinstance(arg, ast.List) and arg.elts:
        arg = arg.elts[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "/" not in arg.value:
        return arg.value
    return None


def programs_called(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    wrappers, lists = _wrappers(tree), _lists(tree)
    found = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        wrapped = isinstance(node.func, ast.Name) and node.func.id in wrappers
        if _is_runner(node) or wrapped:
            head = _head(node.args[0], lists)
            if head:
                found.add(head)
    return found


def every_call() -> dict[str, set[str]]:
    calls: dict[str, set[str]] = {}
    for path in SOURCES:
        for program in programs_called(path):
            calls.setdefault(program, set()).add(str(path.relative_to(REPO)))
    return calls


def known() -> set[str]:
    daemons = {p for table in programs.DAEMONS.values() for p in table}
    return {*programs.TOOLS, *programs.CLIENTS, *programs.GIVEN, *daemons, *test_programs.TESTS, *OURS}


def test_the_scan_sees_the_calls_it_must():
    """The reader finds direct calls, calls through a module's own wrapper, a command kept in a variable
    and which(): if it found nothing, the next test would pass for nothing."""
    calls = every_call()
    assert "lxdkvm/images/base.py" in calls["debootstrap"]      # command = [...]; Popen(command)
    assert "lxdkvm/guests/debian.py" in calls["mkfs.ext4"]      # _run([...]) wrapping subprocess.run
    assert "lxdkvm/machine/nftables.py" in calls["nft"]         # shutil.which("nft")
    assert "tests/integration/guest_artifacts.py" in calls["mcopy"]  # run = lambda *c: subprocess.run(c)
    assert "tests/integration/test_outputs.py" in calls["tmux"]


def test_every_program_run_on_the_machine_is_installed_by_setup_or_the_tests():
    unlisted = {program: sorted(where) for program, where in every_call().items() if program not in known()}
    assert not unlisted, ("programs called but installed by nobody: add each to lxdkvm/machine/programs.py "
                          f"(lxdkvm runs it) or tests/programs.py (only tests do): {unlisted}")


def test_every_listed_program_has_a_package_and_no_program_is_listed_twice():
    tables = [programs.TOOLS, programs.GIVEN, test_programs.TESTS, programs.CLIENTS, *programs.DAEMONS.values()]
    names = [p for table in tables for p in table]
    assert len(names) == len(set(names))
    assert all(package and " " not in package for table in tables[:1] + tables[2:] for package in table.values())


@pytest.mark.parametrize("program", sorted({*programs.TOOLS, *programs.CLIENTS, *test_programs.TESTS}))
def test_the_tests_run_where_every_listed_program_is_there(program):
    """tests/conftest.py installed them before the first test (as root; a fresh machine has none)."""
    package = {**programs.TOOLS, **programs.CLIENTS, **test_programs.TESTS}[program]
    assert programs.present(program), f"{program} missing: apt-get install {package}"


def test_packages_come_once_each_in_the_tables_order():
    table = {"lxd": "lxd", "lxc": "lxd-client", "nsenter": "util-linux", "unshare": "util-linux", "dot": "graphviz"}
    assert programs.packages_for(["dot", "unshare", "nsenter", "lxd"], table) == ["lxd", "util-linux", "graphviz"]


def test_nothing_is_installed_when_nothing_is_missing():
    calls = []
    assert programs.ensure({"sh": "dash"}, "a shell", calls.append) == []
    assert calls == []
