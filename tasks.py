"""invoke tasks: thin wrappers over the `lxdkvm` command. `invoke --list` shows them.

They talk to LXD, or to Incus with LXDKVM_DAEMON=incus in the environment (`LXDKVM_DAEMON=incus invoke
lab-up`), which the `lxdkvm` they run reads."""

from pathlib import Path

from invoke import task


@task
def setup(c):
    """Install, start and initialise LXD (or Incus, with LXDKVM_DAEMON=incus): pool, NAT bridge, when needed."""
    c.run("lxdkvm setup", pty=False)


@task(pre=[setup])
def image(c, force=False):
    """Build the base image offline (debootstrap), or reuse the cached one."""
    c.run(f"lxdkvm image build{' --force' if force else ''}")


@task(pre=[image])
def bake(c, force=False):
    """Bake the KVM-host image (libvirt + QEMU installed and verified), or reuse the cached one."""
    c.run(f"lxdkvm image bake{' --force' if force else ''}")


def _lab(lab):
    return f" {lab}" if lab else ""


@task(help={"lab": "A lab file [default: the embedded default lab, labs/default.yaml]."})
def lab_up(c, lab=None):
    """Bring up a lab: installs and starts LXD, builds and bakes the image when missing, then creates
    the hosts in parallel and waits until each is ready."""
    c.run(f"lxdkvm up{_lab(lab)}", pty=False)


@task(help={"lab": "A lab file or the name of a lab that is up [default: the default lab]."})
def lab_down(c, lab=None):
    """Delete a lab: its hosts, networks, profiles and project, and nothing else."""
    c.run(f"lxdkvm down{_lab(lab)}", pty=False)


@task(help={"lab": "A lab file or the name of a lab that is up [default: the default lab]."})
def lab_status(c, lab=None):
    """Hosts of a lab, their state, addresses per network and readiness."""
    c.run(f"lxdkvm status{_lab(lab)}", pty=False)


@task(help={"lab": "A lab file [default: the embedded default lab]."})
def lab_plan(c, lab=None):
    """What lab-up would create, change or delete, and why (changes nothing)."""
    c.run(f"lxdkvm plan{_lab(lab)}", pty=False)


@task(help={"lab": "A lab file or the name of a lab that is up [default: the default lab].",
            "playbook": "One of playbooks/ (site.yml, kvm-host.yml, guests.yml, verify.yml) or a playbook file."})
def lab_provision(c, lab=None, playbook="site.yml"):
    """Run a playbook against a lab that is up, with Ansible (docs/ansible.md)."""
    c.run(f"lxdkvm provision{_lab(lab)} --playbook {playbook}", pty=False)


@task
def bench(c, runs=3):
    """Time `up` of 3 and 10 hosts against the floor (plain containers of the same image) (docs/benchmarks.md)."""
    c.run(f"python3 benchmarks/floor.py --runs {runs}")


@task
def bench_seed(c, hosts=3):
    """Time N hosts to ready: seed method vs baked image on dir vs on copy-on-write (docs/seed-benchmarks.md)."""
    c.run(f"python3 benchmarks/ready_hosts.py --hosts {hosts}")


@task
def bench_labs(c):
    """Time lab-up of 3 and 10 hosts and lab-down, against serial provisioning (docs/lab-benchmarks.md)."""
    c.run("python3 benchmarks/lab_up.py")


@task(help={"before": "The git ref to compare with (default: main before this round's security work).",
            "rounds": "Moves of each guest per release."})
def bench_security(c, before="", rounds=4):
    """Time up, verify and live migrations against the code before the security work, in one run
    (docs/security-benchmarks.md)."""
    c.run(f"python3 benchmarks/before_after.py --rounds {rounds}" + (f" --before {before}" if before else ""))


@task
def render_profiles(c):
    """Rewrite the ready-to-paste profiles in profiles/ from the templates."""
    from lxdkvm.hosts import profile

    for name, text in profile.committed_profiles().items():
        Path("profiles", name).write_text(text)
        print(f"wrote profiles/{name}")


@task
def test(c, unit=False):
    """Run the tests: unit tests, then integration tests against a real LXD, and test_incus.py against a real
    Incus that it installs and sets up through `lxdkvm setup --daemon incus` when missing (needs root)."""
    c.run("python3 -m pytest tests/unit" if unit else "python3 -m pytest tests", pty=False)


@task
def render_docs(c):
    """Rewrite docs/lab-file.md and schemas/lab.schema.json from the lab-file schema, and
    docs/default-lab.svg from labs/default.yaml (needs Graphviz: apt-get install graphviz)."""
    from lxdkvm.outputs import reference

    for path, text in reference.committed().items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        print(f"wrote {path}")
    Path(reference.DEFAULT_LAB_SVG).write_bytes(reference.default_lab_svg())
    print(f"wrote {reference.DEFAULT_LAB_SVG}")
