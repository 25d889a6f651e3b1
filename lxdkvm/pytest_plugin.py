"""lxdkvm's pytest plugin (entry point `pytest11: lxdkvm`, loaded wherever lxdkvm is installed): the
session fixture `lxdkvm_lab` hands tests a `lxdkvm.Lab` that is up.

Which lab: `--lxdkvm-lab FILE` (relative to where pytest runs), else the ini key `lxdkvm_lab` (relative to
the ini file). The fixture:
- reuses the lab when it is up and unchanged: `plan` has nothing to do (no action, no conflict);
- converges it with `up` when it is up but differs from its file (as `lxdkvm up` would), and leaves it up
  at the end, as it found it;
- brings it up when it is not, and takes it down at the end of the session (also when `up` failed half
  way), unless `--lxdkvm-keep` (ini `lxdkvm_keep = true`) keeps it for the next run to reuse.

Progress goes to the logger `lxdkvm.pytest` (shown with a failure, or live with `--log-cli-level=INFO`),
and one line per lab to the terminal summary. Unused, the plugin costs two options and an ini key: lxdkvm
itself is imported only by a test that asks for the fixture. `-p no:lxdkvm` turns it off.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

LOG = logging.getLogger("lxdkvm.pytest")
REUSE, CONVERGE, CREATE = "reuse", "converge", "create"
_SUMMARY = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lxdkvm", "lxdkvm labs (fixture lxdkvm_lab)")
    group.addoption("--lxdkvm-lab", metavar="FILE", default=None,
                    help="Lab file the lxdkvm_lab fixture brings up (default: ini lxdkvm_lab).")
    group.addoption("--lxdkvm-keep", action="store_true", default=None,
                    help="Leave the lab up after the session (the next run reuses it).")
    parser.addini("lxdkvm_lab", "Lab file the lxdkvm_lab fixture brings up, relative to this ini file.",
                  default="")
    parser.addini("lxdkvm_keep", "Leave the lab up after the session.", type="bool", default=False)


def lab_file(option: str | None, ini_value: str, ini_dir: Path | None, invocation_dir: Path) -> Path | None:
    """The lab file: the command line's (relative to where pytest runs), else the ini file's (relative to
    that file), else None."""
    if option:
        return invocation_dir / option
    if ini_value.strip():
        return (ini_dir or invocation_dir) / ini_value.strip()
    return None


def decide(exists: bool, plan_empty: bool) -> str:
    """What the fixture does with a lab: REUSE it (up and unchanged), CONVERGE it (up, but `plan` has
    something to do) or CREATE it (not up)."""
    if not exists:
        return CREATE
    return REUSE if plan_empty else CONVERGE


def _chosen(config: pytest.Config) -> Path:
    ini = config.inipath.parent if config.inipath else None
    path = lab_file(config.getoption("lxdkvm_lab"), config.getini("lxdkvm_lab"), ini,
                    config.invocation_params.dir)
    if path is None:
        pytest.fail("lxdkvm_lab: no lab file: give --lxdkvm-lab FILE or set lxdkvm_lab in pytest.ini",
                    pytrace=False)
    return path


def _keep(config: pytest.Config) -> bool:
    return bool(config.getoption("lxdkvm_keep") or config.getini("lxdkvm_keep"))


def _decided(lab) -> str:
    """What to do with LAB (`decide`): `status` first, `plan` only for a lab that is up."""
    if not lab.status(guests=False).exists:
        return CREATE
    return decide(True, lab.plan().empty)


SAID = {REUSE: "reused (up and unchanged)", CONVERGE: "was up and differed from its file: converged",
        CREATE: "brought up"}


@pytest.fixture(scope="session")
def lxdkvm_lab(request: pytest.FixtureRequest):
    """A `lxdkvm.Lab` that is up, for the whole session (see the module's docstring)."""
    from lxdkvm.api import Lab

    config = request.config
    summary = config.stash.setdefault(_SUMMARY, [])
    LOG.setLevel(min(LOG.getEffectiveLevel(), logging.INFO))
    lab = Lab.load(_chosen(config), report=lambda scope, message: LOG.info("%s: %s", scope, message),
                   on_warning=LOG.warning)
    keep, started = _keep(config), time.monotonic()
    action = _decided(lab)
    LOG.info("lab %s: %s", lab.name, action)
    owned = action == CREATE and not keep  # taken down at the end: only what this fixture brought up
    try:
        if action != REUSE:
            lab.up()
    except BaseException:
        if owned:  # half made: nothing of it stays behind
            summary.append(f"lab {lab.name}: up failed, taken down")
            lab.down()
        raise
    summary.append(f"lab {lab.name} {SAID[action]} in {time.monotonic() - started:.1f}s")
    yield lab
    if owned:
        lab.down()
        summary.append(f"lab {lab.name} taken down")
    elif action == CREATE:
        summary.append(f"lab {lab.name} kept up (lxdkvm_keep): `lxdkvm down {lab.name}` removes it")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    for line in config.stash.get(_SUMMARY, []):
        terminalreporter.write_line(f"lxdkvm: {line}")
