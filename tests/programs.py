"""The programs only the tests and benchmarks run on the machine, each with the Debian package that has it.

tests/conftest.py installs them, and lxdkvm's own (lxdkvm.machine.programs.TOOLS), when missing, before
the first test; tests/unit/test_programs.py fails when a test calls a program listed nowhere.
"""

TESTS: dict[str, str] = {
    "tmux": "tmux",                # status --watch seen in a real terminal (test_outputs.py)
    "syslinux": "syslinux",        # a stranger's bootable appliance disk (guest_artifacts.py)
    "mcopy": "mtools",
    "mkfs.fat": "dosfstools",
    "ssh-keygen": "openssh-client",  # keys checked against what lxdkvm wrote
    "git": "git",                  # the fresh-machine sandbox's copy, benchmarks/before_after.py
    "bash": "bash",
}

# Files the tests read from a package, not a program.
FILES: dict[str, str] = {
    "/usr/lib/syslinux/mbr/mbr.bin": "syslinux-common",
}
