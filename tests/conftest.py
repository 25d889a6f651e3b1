import json
from pathlib import Path

import pytest

from lxdkvm.machine import hostcaps

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = sorted(p.stem for p in (FIXTURES / "hosts").glob("*.json"))


def load_host(name: str) -> hostcaps.HostFacts:
    return hostcaps.HostFacts.from_dict(json.loads((FIXTURES / "hosts" / f"{name}.json").read_text()))


@pytest.fixture(params=HOSTS)
def recorded_host(request) -> tuple[str, hostcaps.HostFacts]:
    return request.param, load_host(request.param)
