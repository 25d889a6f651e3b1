"""invoke tasks: thin wrappers over the `lxdkvm` command. `invoke --list` shows them."""

from pathlib import Path

from invoke import task

DEFAULT_HOSTS = ("kvm-host-1", "kvm-host-2")
PROFILE = "kvm-host"
BAKED = "lxdkvm/kvm-host"


@task
def setup(c):
    """Install, start and initialise LXD (pool, NAT bridge) when needed."""
    c.run("lxdkvm setup", pty=False)


@task(pre=[setup])
def image(c, force=False):
    """Build the base image offline (debootstrap), or reuse the cached one."""
    c.run(f"lxdkvm image build{' --force' if force else ''}")


@task(pre=[image])
def bake(c, force=False):
    """Bake the KVM-host image (libvirt + QEMU installed and verified), or reuse the cached one."""
    c.run(f"lxdkvm image bake{' --force' if force else ''}")


@task(pre=[bake])
def lab_up(c):
    """Bring up the default lab: KVM hosts from the baked image on the copy-on-write pool, ready."""
    c.run(f"lxdkvm profile apply {PROFILE} --baked --kvm-gid-from {BAKED}")
    c.run(f"lxdkvm launch {' '.join(DEFAULT_HOSTS)} --image {BAKED}")


@task
def bench(c, hosts=3):
    """Time N hosts to ready: seed method vs baked image on dir vs on copy-on-write (docs/benchmarks.md)."""
    c.run(f"python3 benchmarks/ready_hosts.py --hosts {hosts}")


@task
def lab_down(c):
    """Delete the default lab's hosts and profile."""
    c.run(f"lxdkvm delete {' '.join(DEFAULT_HOSTS)}")
    c.run(f"lxdkvm profile delete {PROFILE}")


@task
def render_profiles(c):
    """Rewrite the ready-to-paste profiles in profiles/ from the templates."""
    from lxdkvm import profile

    for name, text in profile.committed_profiles().items():
        Path("profiles", name).write_text(text)
        print(f"wrote profiles/{name}")


@task
def test(c, unit=False):
    """Run the tests: unit tests, then integration tests against a real LXD (needs root)."""
    c.run("python3 -m pytest tests/unit" if unit else "python3 -m pytest tests", pty=False)
