"""`lxdkvm` starts fast because each command imports the library it needs when it runs. This checks the
structure that makes it so (which modules a bare `import lxdkvm.cli` loads), not a time: timings are
benchmarks/cli_startup.py's business."""

import json
import subprocess
import sys

HEAVY = ("pylxd", "requests", "urllib3", "cryptography", "pydantic", "jinja2", "lxdkvm.lxd", "lxdkvm.labfile.read", "lxdkvm.labfile.schema")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout))


def test_importing_the_cli_loads_no_heavy_library():
    loaded = loaded_after("import lxdkvm.cli")
    assert "click" in loaded  # the check itself works
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_the_lab_commands_load_pydantic_only_to_read_a_lab_file():
    loaded = loaded_after("from lxdkvm.lab import pipeline; pipeline.lab_name('some-lab')")
    assert "pylxd" in loaded  # status talks to LXD
    assert "pydantic" not in loaded and "jinja2" not in loaded
