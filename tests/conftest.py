import json
import os
from pathlib import Path

import pytest

from lxdkvm.machine import hostcaps, programs

from . import programs as test_programs

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = sorted(p.stem for p in (FIXTURES / "hosts").glob("*.json"))


@pytest.fixture(scope="session", autouse=True)
def programs_installed():
    """Every program lxdkvm and the tests run on this machine, installed from Debian's packages when missing
    (as root; a newcomer's fresh machine has none of them), before the first test."""
    if os.geteuid() != 0:
        return
    programs.ensure({**programs.TOOLS, **test_programs.TESTS}, "the programs the tests run", print)
    programs.ensure(programs.CLIENTS, "the clients docs/tools.md uses", print, recommends=False)
    files = {path: package for path, package in test_programs.FILES.items() if not Path(path).exists()}
    if files:
        programs.apt_install(files.values(), f"the files the tests read ({', '.join(files)})", print)


def load_host(name: str) -> hostcaps.HostFacts:
    return hostcaps.HostFacts.from_dict(json.loads((FIXTURES / "hosts" / f"{name}.json").read_text()))


@pytest.fixture(params=HOSTS)
def recorded_host(request) -> tuple[str, hostcaps.HostFacts]:
    return request.param, load_host(request.param)
