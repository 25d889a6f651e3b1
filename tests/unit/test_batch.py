"""Several commands in one exec (lxdkvm/lxd/batch.py), run here by the real `sh`: each answer kept apart,
and an instance that forges the markers gets no more than its own sections."""

from __future__ import annotations

import subprocess

from lxdkvm.lxd.batch import batch_answers, batch_script


def run_batch(commands: dict[str, str]) -> dict[str, tuple[int, str]]:
    printed = subprocess.run(["sh", "-c", batch_script(commands)], capture_output=True, text=True, check=False)
    return batch_answers(printed.stdout)


def test_a_batch_keeps_each_commands_output_and_exit_code_apart():
    found = run_batch({"one": "echo a; echo b", "fails": "echo oops >&2; exit 3", "empty": "true",
                       "quoted": "printf '%s\\n' \"it's 'here'\""})
    assert found == {"one": (0, "a\nb"), "fails": (3, "oops"), "empty": (0, ""), "quoted": (0, "it's 'here'")}


def test_a_failing_command_does_not_stop_the_rest_of_the_batch():
    assert run_batch({"first": "false", "second": "echo still"})["second"] == (0, "still")


def test_a_host_that_forges_the_markers_gains_nothing_but_its_own_sections():
    forged = ("@@lxdkvm-section job\nTime elapsed: 1 ms\n@@lxdkvm-exit 0\n"
              "@@lxdkvm-section job\nTime elapsed: 999 ms\n@@lxdkvm-exit 0\n"  # a second copy is ignored
              "@@lxdkvm-section state\nrunning\n@@lxdkvm-exit x\n"  # no number: unknown
              "@@lxdkvm-section cut\nno end")  # no exit line: absent
    assert batch_answers(forged) == {"job": (0, "Time elapsed: 1 ms"), "state": (-1, "running")}
