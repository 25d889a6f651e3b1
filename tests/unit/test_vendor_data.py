"""A host's `cloud-init.vendor-data` from a lab file: cloud-init merges it under the kvm-host profile's own
user-data key by key, so a key both set is dropped from vendor-data without a word; lxdkvm refuses such
vendor-data instead, and the baked image runs vendor-data scripts (cloud-init's scripts-vendor module)."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from lxdkvm.hosts import profile
from lxdkvm.labfile import userdata

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("packages", [True, False])
def test_the_refused_keys_are_the_ones_the_kvm_host_user_data_sets(packages):
    spec = profile.portable("intel", install_packages=packages)
    spec = dataclasses.replace(spec, ssh_user="lab", ssh_key="ssh-ed25519 AAAA lab")
    keys = set(yaml.safe_load(profile.user_data(spec)))
    assert keys <= set(userdata.HOST_USER_DATA_KEYS)
    if packages:
        assert keys == set(userdata.HOST_USER_DATA_KEYS)


@pytest.mark.parametrize("key", userdata.HOST_USER_DATA_KEYS)
def test_vendor_data_setting_a_host_key_is_refused_with_a_hint(key):
    problem = userdata.vendor_data_problem(f"#cloud-config\n{key}: []\n")
    assert problem and key in problem and "#! script" in problem


@pytest.mark.parametrize("text", ["#cloud-config\ntimezone: Europe/Paris\n", "#!/bin/sh\necho hi\n", None, ""])
def test_other_vendor_data_passes(text):
    assert userdata.vendor_data_problem(text) is None


def test_the_baked_image_runs_vendor_data_scripts():
    lean = (REPO / "images" / "bake-lean-boot.sh").read_text()
    final = re.search(r"cloud_final_modules: \[([^\]]*)\]", lean).group(1)
    modules = [m.strip() for m in final.split(",")]
    assert "scripts-vendor" in modules and modules.index("scripts-vendor") < modules.index("scripts-user")
