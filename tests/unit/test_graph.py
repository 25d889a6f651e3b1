"""lxdkvm graph: lab (+ live status) → graph model → mermaid / dot text → SVG/PNG through Graphviz."""

import dataclasses
import ipaddress
import xml.etree.ElementTree as ET

import pytest
import yaml
from click.testing import CliRunner

from lxdkvm.cli.app import main
from lxdkvm.lab.status import LabStatus
from lxdkvm.labfile import read
from lxdkvm.labfile import topology as t
from lxdkvm.outputs import graph, graphtext, graphviz


def default_lab() -> t.Lab:
    text, source = read.read(None)
    lab, problems, _ = read.parse(text, source)
    assert not problems
    return lab


def with_guests(lab: t.Lab) -> t.Lab:
    nic = t.Attachment
    return dataclasses.replace(lab, guests=(
        t.Guest("web", "kvm-1", (nic("data", "eth0", ipaddress.IPv4Address("10.200.20.101")),), 1, 256),
        t.Guest("db", "kvm-1", (nic("data", "eth0", ipaddress.IPv4Address("10.200.20.102")), nic("mgmt", "eth1")),
                2, 512),
        t.Guest("mover", "kvm-1", (nic("data", "eth0", ipaddress.IPv4Address("10.200.20.103")),), disk_mib=64),
    ))


def live_status(**host_extra) -> dict:
    return {
        "lab": "default", "project": "lxdkvm-default", "exists": True,
        "networks": [{"name": "mgmt", "bridge": "default-mgmt", "subnet": "10.200.10.0/24",
                      "gateway": "10.200.10.1/24"},
                     {"name": "data", "bridge": "default-data", "subnet": "10.200.20.0/24",
                      "gateway": "none"}],
        "hosts": [
            {"name": "kvm-1", "state": "Running", "ready": True,
             "addresses": {"mgmt": ["10.200.10.173/24"], "data": ["10.200.20.11/24"]},
             "guests": [{"name": "web", "state": "running", "booted": True,
                         "addresses": {"data": ["10.200.20.101/24"]}},
                        {"name": "db", "state": "paused", "booted": False, "addresses": {}}]},
            {"name": "kvm-2", "state": "Running", "ready": False, "addresses": {"mgmt": [], "data": []},
             "guests": [{"name": "mover", "state": "running", "booted": True, "addresses": {}},
                        {"name": "stray", "state": "shut off", "booted": False, "addresses": {}}]},
            {"name": "extra", "state": "Stopped", "ready": False, "addresses": {}, **host_extra},
        ],
    }


# ---------------------------------------------------------------------------------------- the model
def test_from_the_lab_file_alone():
    g = graph.build(default_lab())
    assert not g.live and g.note == "from the lab file (the lab is not up)"
    mgmt, data = g.networks
    assert (mgmt.mode, mgmt.gateway, mgmt.dhcp, mgmt.bridge) == ("nat", "10.200.10.1", True, "default-mgmt")
    assert mgmt.facts == ["10.200.10.0/24", "gw 10.200.10.1 · NAT · DHCP"]
    assert data.facts == ["10.200.20.0/24", "isolated · no gateway"]
    assert [(h.name, h.status, h.facts) for h in g.hosts] == [("kvm-1", "", []), ("kvm-2", "", [])]
    assert [(e.node, e.network, e.label) for e in g.edges] == [
        ("kvm-1", "data", "eth1 10.200.20.11"), ("kvm-1", "mgmt", "eth0 dhcp"),
        ("kvm-2", "data", "eth1 10.200.20.12"), ("kvm-2", "mgmt", "eth0 dhcp")]


def test_guests_are_drawn_inside_their_hosts_with_their_addresses():
    g = graph.build(with_guests(default_lab()))
    kvm1 = g.hosts[0]
    assert [(x.name, x.facts) for x in kvm1.guests] == [
        ("web", ["1 vCPU · 256 MiB"]), ("db", ["2 vCPU · 512 MiB"]), ("mover", ["1 vCPU · 128 MiB · 64 MiB disk"])]
    guest_edges = [(e.node, e.network, e.label) for e in g.edges if e.guest]
    assert guest_edges == [("kvm-1/db", "data", "nic0 10.200.20.102"), ("kvm-1/db", "mgmt", "nic1 dhcp"),
                           ("kvm-1/mover", "data", "nic0 10.200.20.103"),
                           ("kvm-1/web", "data", "nic0 10.200.20.101")]


def test_live_state_annotates_hosts_guests_and_leases():
    g = graph.build(with_guests(default_lab()), LabStatus.from_json(live_status()))
    assert g.live and g.note == "live state from LXD"
    hosts = {h.name: h for h in g.hosts}
    assert [h.status for h in g.hosts] == ["ready", "not ready", "stopped"]
    assert not hosts["extra"].declared and hosts["extra"].facts == ["stopped · not in lab file"]
    labels = {(e.node, e.network): e.label for e in g.edges}
    assert labels[("kvm-1", "mgmt")] == "eth0 10.200.10.173 (dhcp)"
    assert labels[("kvm-2", "mgmt")] == "eth0 dhcp, no lease yet"
    assert labels[("kvm-1/web", "data")] == "nic0 10.200.20.101"
    guests = {x.name: (host.name, x) for host in g.hosts for x in host.guests}
    assert guests["web"][1].facts == ["1 vCPU · 256 MiB", "running · booted"]
    assert guests["db"][1].facts == ["2 vCPU · 512 MiB", "paused"]
    # live migration: drawn where it runs now, and said so
    assert guests["mover"][0] == "kvm-2" and guests["mover"][1].notes == ("moved from kvm-1",)
    assert ("kvm-2/mover", "data") in labels
    assert guests["stray"][0] == "kvm-2" and not guests["stray"][1].declared


def test_a_host_in_the_file_but_not_in_lxd_is_missing():
    status = live_status()
    status["hosts"] = status["hosts"][:1]
    g = graph.build(with_guests(default_lab()), LabStatus.from_json(status))
    assert [(h.name, h.status) for h in g.hosts] == [("kvm-1", "ready"), ("kvm-2", "missing")]
    mover = next(x for x in g.hosts[0].guests if x.name == "mover")
    assert mover.state == "missing"


def test_a_lab_that_is_not_up_draws_from_the_file():
    down = {"lab": "default", "project": "lxdkvm-default", "exists": False}
    assert not graph.build(default_lab(), LabStatus.from_json(down)).live


def test_from_status_alone():
    g = graph.from_status(LabStatus.from_json(live_status()))
    assert [(n.name, n.mode, n.gateway) for n in g.networks] == [("mgmt", "nat", "10.200.10.1"),
                                                                 ("data", "isolated", "")]
    labels = {(e.node, e.label) for e in g.edges}
    assert labels >= {("kvm-1", "10.200.10.173"), ("kvm-1/web", "10.200.20.101")}
    assert [x.name for x in g.hosts[1].guests] == ["mover", "stray"]


# ---------------------------------------------------------------------------------------- writers
def test_mermaid_shapes_classes_and_legend():
    text = graphtext.mermaid(graph.build(with_guests(default_lab()), LabStatus.from_json(live_status())))
    front = text.split("---")[1]
    assert yaml.safe_load(front) == {"title": "lab default — live state from LXD"}
    lines = text.splitlines()
    assert lines[3] == "flowchart TB"
    assert '  n_mgmt{{"<b>mgmt</b><br/>10.200.10.0/24<br/>gw 10.200.10.1 · NAT · DHCP"}}:::nat' in lines
    assert '  n_data[/"<b>data</b><br/>10.200.20.0/24<br/>isolated · no gateway"/]:::isolated' in lines
    assert '  m_machine ---|"default-mgmt 10.200.10.1"| n_mgmt' in lines
    assert '  n_mgmt ---|"eth0 10.200.10.173 (dhcp)"| h_kvm_2d_1' in lines  # NAT above the hosts
    assert '  h_kvm_2d_1 ---|"eth1 10.200.20.11"| n_data' in lines  # isolated below
    assert '  subgraph c_kvm_2d_2["host kvm-2"]' in lines
    assert '  g_kvm_2d_1_2f_web -.-|"nic0 10.200.20.101"| n_data' in lines
    assert '  subgraph legend["legend"]' in lines and "  classDef isolated" in text


def test_mermaid_without_nat_has_no_machine():
    lab = default_lab()
    lab = dataclasses.replace(lab, networks=lab.networks[1:],
                              hosts=tuple(dataclasses.replace(h, attachments=h.attachments[1:])
                                          for h in lab.hosts))
    text = graphtext.mermaid(graph.build(lab))
    assert "m_machine" not in text and "classDef nat" in text


def test_names_from_lxd_that_are_no_host_names_are_left_out_with_a_warning():
    status = live_status()
    status["hosts"][2]["name"] = 'x"]\n<script>#1;|'
    checked = LabStatus.from_json(status)
    assert [h.name for h in checked.hosts] == ["kvm-1", "kvm-2"]
    assert checked.warnings == ("lab default: an instance with name 'x????script??1??' (16 characters) "
                                "(left out)",)
    drawn = graph.build(default_lab(), checked)
    for text in (graphtext.mermaid(drawn), graphtext.dot(drawn)):
        assert "script" not in text


def test_names_cannot_break_out_of_labels_even_when_not_checked():
    hostile = 'x"]\n<script>#1;|'
    drawn = graph.build(default_lab())
    drawn = dataclasses.replace(drawn, hosts=(*drawn.hosts, graph.HostNode(hostile, "Stopped", False, False)))
    mm = graphtext.mermaid(drawn)
    assert "<script>" not in mm and "x#34;]\\u000a#60;script#62;#35;1;#124;" in mm
    dot = graphtext.dot(drawn)
    assert "<script>" not in dot and "&lt;script&gt;" in dot


def test_dot_renders_to_valid_svg_and_png():
    text = graphtext.dot(graph.build(with_guests(default_lab()), LabStatus.from_json(live_status())))
    svg = graphviz.render(text, "svg")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    titles = {e.text for e in root.iter("{http://www.w3.org/2000/svg}title")}
    assert {"n_mgmt", "n_data", "h_kvm_2d_1", "g_kvm_2d_2_2f_mover", "cluster_kvm_2d_1", "legend"} <= titles
    assert graphviz.render(text, "png").startswith(b"\x89PNG\r\n\x1a\n")
    assert graphviz.render(text, "svg") == svg  # the same picture every time


def test_without_dot_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(graphviz.shutil, "which", lambda _name: None)
    with pytest.raises(graphviz.GraphvizMissing, match=r"apt-get install graphviz"):
        graphviz.render("graph x {}", "png")


def test_dot_errors_are_one_message():
    with pytest.raises(graphviz.LxdkvmError, match=r"`dot -Tsvg` failed: .*syntax error"):
        graphviz.render("graph {", "svg")


# ---------------------------------------------------------------------------------------- command
def test_graph_command_writes_each_format(tmp_path):
    runner = CliRunner()
    done = runner.invoke(main, ["graph", "labs/default.yaml", "--no-live"])
    assert done.exit_code == 0 and done.output.startswith("---\ntitle:")
    done = runner.invoke(main, ["graph", "labs/default.yaml", "--no-live", "-f", "dot"])
    assert done.exit_code == 0 and done.output.startswith('graph "default" {')
    for suffix, magic in ((".svg", b"<?xml"), (".png", b"\x89PNG")):
        out = tmp_path / f"lab{suffix}"
        done = runner.invoke(main, ["graph", "labs/default.yaml", "--no-live", "-o", str(out)])
        assert done.exit_code == 0, done.output
        assert out.read_bytes().startswith(magic)


def test_graph_command_refuses_an_invalid_lab_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nhosts: [{name: a, networks: [nowhere]}]\n")
    done = CliRunner().invoke(main, ["graph", str(bad)])
    assert done.exit_code == 2 and "nowhere" in done.output and "Traceback" not in done.output
