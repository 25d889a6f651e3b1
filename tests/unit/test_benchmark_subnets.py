"""The benchmarks' labs and the tests' labs never ask for the same subnet. A lab refuses a subnet that a
route of the machine already covers, so a benchmark still running while the suite runs (CI on a busy
machine, a developer measuring) would otherwise fail tests that have nothing wrong with them."""

import re
import sys
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from measure import SUBNETS  # benchmarks/ is a folder of scripts, not a package

IN_TEXT = re.compile(r"\b10\.(\d{1,3})\b")


def _octets(path: Path) -> set[int]:
    """Second octets of 10.N addresses in a source file: in its strings, and as bare numbers 200-255 (the
    benchmarks pass a lab's N as an int, e.g. `measure("lab3", 3, 250, ...)`)."""
    found = set()
    with open(path, "rb") as source:
        for token in tokenize.tokenize(source.readline):
            if token.type == tokenize.STRING:
                found |= {int(n) for n in IN_TEXT.findall(token.string) if 200 <= int(n) <= 255}
            elif token.type == tokenize.NUMBER and token.string.isdigit() and 200 <= int(token.string) <= 255:
                found.add(int(token.string))
    return found


def test_every_benchmark_subnet_is_in_the_benchmarks_range():
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        outside = sorted(n for n in _octets(path) if n not in SUBNETS and path.name != "measure.py")
        assert not outside, f"{path.name} uses 10.{outside[0]}.x, outside the benchmarks' range {SUBNETS}"


def test_no_test_lab_takes_a_subnet_from_the_benchmarks_range():
    for path in sorted((REPO / "tests").rglob("*")):
        if path.suffix not in {".py", ".yaml", ".yml"} or path.name == Path(__file__).name:
            continue
        text = path.read_text(errors="replace")
        taken = sorted({int(n) for n in re.findall(r"\b10\.(\d{1,3})\.(?:\d|x|\{)", text)} & set(SUBNETS))
        assert not taken, f"{path.relative_to(REPO)} uses 10.{taken[0]}.x, which the benchmarks own"


def test_the_checks_see_what_they_check():
    # the scan finds the benchmarks' subnets at all (a regex that matched nothing would pass above)
    seen = set().union(*(_octets(p) for p in (REPO / "benchmarks").glob("*.py")))
    assert {243, 244, 245, 250} <= seen
