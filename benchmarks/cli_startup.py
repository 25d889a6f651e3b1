#!/usr/bin/env python3
"""How fast `lxdkvm` answers, against the Python interpreter starting and doing nothing, in one run.

  - baseline: `python3 -c pass` (the same interpreter)
  - `lxdkvm --help`
  - what `status` imports before it talks to LXD (`import lxdkvm.cli, lxdkvm.lab`)
  - `lxdkvm status NAME` of a lab that is not up (one LXD round trip: the project does not exist)
  - `lxdkvm plan` of the embedded default lab (reads LXD; changes nothing)

Every command runs as `python3 -m lxdkvm ...` with this interpreter (the `lxdkvm` script does the same
import; a pyenv shim in front of it would add its own startup). The commands are run in turns, after one
warm-up turn (hot file cache), and each time is the median of --runs. Prints each median, its spread and
its ratio to the baseline. `python3 -m` finds lxdkvm in the current directory first, so to measure
another checkout, run this script from that checkout's directory.

Run from the repository:  python3 benchmarks/cli_startup.py [--runs 7] [--lab-name NAME]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def commands(lab_name: str) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "python3 -c pass (baseline)": [python, "-c", "pass"],
        "lxdkvm --help": [python, "-m", "lxdkvm", "--help"],
        "imports of status": [python, "-c", "import lxdkvm.cli, lxdkvm.lab"],
        f"lxdkvm status {lab_name}": [python, "-m", "lxdkvm", "status", lab_name],
        "lxdkvm plan": [python, "-m", "lxdkvm", "plan"],
    }


def once(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # plan exits 1 when it finds a conflict: still an answer
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return took


def measure(runs: int, lab_name: str) -> dict[str, list[float]]:
    todo = commands(lab_name)
    for command in todo.values():  # warm-up: file cache, .pyc files
        once(command)
    times: dict[str, list[float]] = {label: [] for label in todo}
    for _ in range(runs):  # in turns, so a slow moment of the machine hits every command alike
        for label, command in todo.items():
            times[label].append(once(command))
    return times


def report(times: dict[str, list[float]]) -> str:
    baseline = statistics.median(next(iter(times.values())))
    lines = [f"{'command':<34} {'median':>9} {'min':>8} {'max':>8} {'× baseline':>11}"]
    for label, values in times.items():
        median = statistics.median(values)
        lines.append(f"{label:<34} {median * 1000:7.0f}ms {min(values) * 1000:6.0f}ms "
                     f"{max(values) * 1000:6.0f}ms {median / baseline:10.1f}×")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (median)")
    parser.add_argument("--lab-name", default="lxdkvm-bench-absent", help="a lab that is not up")
    args = parser.parse_args()
    print(report(measure(args.runs, args.lab_name)))


if __name__ == "__main__":
    main()
