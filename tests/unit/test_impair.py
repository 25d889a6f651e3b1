"""Impaired links on plain data: values with units and bounds, the nft script and tc arguments planned for
them, the table read back, and the JSON schema of `lxdkvm impair --json`. No LXD, no kernel."""

import json

import pytest

from lxdkvm import doctor
from lxdkvm.lab import impair as plan
from lxdkvm.labfile import impairment as values
from lxdkvm.labfile.impairment import Impairment
from lxdkvm.outputs import documents

from .. import jsonschemas



@pytest.mark.parametrize("text, bp", [("30%", 3000), ("0.5%", 50), ("100%", 10000), ("0.01%", 1)])
def test_loss_is_read_in_basis_points(text, bp):
    assert values.loss(text) == bp


@pytest.mark.parametrize("text", ["30", "0%", "101%", "-1%", "1.234%", "30 %", "3e1%", "", "½%"])
def test_a_loss_outside_its_syntax_or_bounds_is_refused(text):
    with pytest.raises(values.ImpairmentError) as caught:
        values.loss(text)
    assert caught.value.key == "loss" and "0.01% to 100%" in caught.value.hint


@pytest.mark.parametrize("text, bit", [("2Mbit", 2_000_000), ("500kbit", 500_000), ("1gbit", 10**9),
                                       ("8000bit", 8000), ("1.5Mbit", 1_500_000)])
def test_rates_are_read_in_bits_per_second(text, bit):
    assert values.rate(text) == bit


@pytest.mark.parametrize("text", ["2Mbps", "2MB", "7999bit", "101Gbit", "2 Mbit", "Mbit"])
def test_a_rate_outside_its_syntax_or_bounds_is_refused(text):
    with pytest.raises(values.ImpairmentError):
        values.rate(text)


def test_delay_and_jitter_are_checked_together():
    assert values.parse(delay="20ms", jitter="5ms") == Impairment(delay_us=20000, jitter_us=5000)
    for kwargs, key in [({"jitter": "5ms"}, "jitter"), ({"delay": "2ms", "jitter": "3ms"}, "jitter"),
                        ({}, ""), ({"delay": "61s"}, "delay"), ({"delay": "2min"}, "delay")]:
        with pytest.raises(values.ImpairmentError) as caught:
            values.parse(**kwargs)
        assert caught.value.key == key


def test_an_impairment_says_what_it_is_and_what_it_needs():
    both = values.parse("30%", "2Mbit")
    assert both.text() == "loss 30% · rate 2Mbit" and both.kinds == ("loss", "rate")
    assert values.parse(delay="1.5s", jitter="800us").text() == "delay 1.5s ± 800us"


LOSSY = plan.Entry("lan", "kvm-2", Impairment(loss_bp=3000), "veth1234abcd")
SLOW = plan.Entry("lan", "kvm-1", Impairment(rate_bit=2_000_000), "vethaaaa0001")


def test_the_script_drops_by_random_numbers_on_the_hosts_veth_and_records_the_impairment():
    text = plan.script("demo", [LOSSY, SLOW])
    assert text.startswith("table bridge lxdkvm-demo {}\ndelete table bridge lxdkvm-demo\n")
    assert 'oifname "veth1234abcd" numgen random mod 10000 < 3000 counter drop comment "impair lan kvm-2 3000 0 0 0"' in text
    assert 'oifname "vethaaaa0001" counter comment "impair lan kvm-1 0 2000000 0 0"' in text
    assert "hook forward" in text and "hook output" in text


def test_no_entries_only_remove_the_table():
    assert plan.script("demo", []) == "table bridge lxdkvm-demo {}\ndelete table bridge lxdkvm-demo\n"


def test_a_device_name_that_is_not_an_interface_name_never_reaches_the_script():
    with pytest.raises(ValueError):
        plan.script("demo", [plan.Entry("lan", "kvm-2", Impairment(loss_bp=1), 'x" drop; #')])
    with pytest.raises(ValueError):  # nor a name that would end the rule's comment
        plan.script("demo", [plan.Entry('lan" accept', "kvm-2", Impairment(loss_bp=1), "veth0")])


def test_a_rate_is_a_token_bucket_and_a_delay_is_netem():
    assert plan.qdisc(SLOW) == ["qdisc", "replace", "dev", "vethaaaa0001", "root", "tbf", "rate", "2000000bit",
                                "burst", "2500", "limit", "50000"]
    late = plan.Entry("lan", "kvm-1", Impairment(rate_bit=10**6, delay_us=20000, jitter_us=5000), "v0")
    assert plan.qdisc(late) == ["qdisc", "replace", "dev", "v0", "root", "netem", "delay", "20000us", "5000us",
                                "rate", "1000000bit"]
    assert plan.qdisc(LOSSY) is None


def test_qdiscs_are_removed_where_no_longer_wanted():
    lossy_now = plan.Entry("lan", "kvm-1", Impairment(loss_bp=10), SLOW.device)
    assert plan.qdisc_changes([SLOW, LOSSY], [lossy_now, LOSSY]) == [["qdisc", "del", "dev", SLOW.device, "root"]]
    assert plan.qdisc_changes([], [SLOW]) == [plan.qdisc(SLOW)]


def test_merging_sets_and_clears_links():
    both = plan.merged([LOSSY], "lan", ["kvm-1"], Impairment(rate_bit=2_000_000))
    assert [e.key for e in both] == [("lan", "kvm-1"), ("lan", "kvm-2")]
    assert plan.merged(both, "lan", ["kvm-2"], None)[0].key == ("lan", "kvm-1")


def _table(entries, extra=()):
    rules = [{"rule": {"family": "bridge", "table": "lxdkvm-demo", "chain": "links", "comment": plan.comment(e),
                       "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": e.device}}]}}
             for e in entries]
    return json.dumps({"nftables": [{"metainfo": {}}, *rules, *extra]})


def test_the_table_reads_back_as_what_was_planned_and_ignores_strangers_rules():
    stranger = {"rule": {"chain": "links", "comment": "impair lan kvm-9 3000 0 0 0 ; evil",
                         "expr": [{"match": {"left": {"meta": {"key": "oifname"}}, "right": "veth0"}}]}}
    bad_device = {"rule": {"chain": "links", "comment": "impair lan kvm-8 3000 0 0 0",
                           "expr": [{"match": {"left": {"meta": {"key": "oifname"}}, "right": "../../x"}}]}}
    assert plan.read_table(_table([LOSSY, SLOW], [stranger, bad_device])) == [SLOW, LOSSY]


def test_what_the_kernel_lacks_is_named():
    assert plan.missing_kinds([plan.Entry("lan", "h", Impairment(loss_bp=1, delay_us=5))],
                              {"loss": True, "rate": True, "delay": False}) == ["delay"]


def test_an_entry_survives_json_and_a_forged_one_does_not():
    assert plan.Entry.from_json(LOSSY.as_json()) == plan.Entry("lan", "kvm-2", Impairment(loss_bp=3000))
    for forged in ({"network": "lan; x", "host": "h"}, {"network": "lan", "host": "h", "loss_percent": "30"},
                   {"network": "lan", "host": "h", "loss_percent": True}):
        with pytest.raises((TypeError, KeyError)):
            plan.Entry.from_json(forged)


def test_the_json_schema_takes_a_real_shape_and_refuses_others():
    doc = documents.impair({"lab": "demo", "network": "lan", "changed": True,
                            "kernel": {"loss": True, "rate": True, "delay": False},
                            "impairments": [{**LOSSY.as_json(), "device": LOSSY.device}]})
    assert jsonschemas.problems("impair", doc) == []
    doc["impairments"][0]["loss_percent"] = 130
    assert jsonschemas.problems("impair", doc) != []


def test_doctor_warns_of_what_the_kernel_cannot_impair():
    rows = {c.name: c for c in doctor.impair_checks({"loss": True, "rate": True, "delay": False})}
    assert rows["impair loss"].status == doctor.PASS and rows["impair delay"].status == doctor.WARN
    assert "CONFIG_NET_SCH_NETEM" in rows["impair delay"].fix
