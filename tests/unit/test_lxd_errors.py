"""LXD's own words and what to do, from answers recorded on a real LXD (no daemon needed)."""

import hashlib
import json
from pathlib import Path

import pytest
from pylxd.exceptions import LXDAPIException

from lxdkvm.errors import LxdRefused
from lxdkvm.images import base
from lxdkvm.lxd import images, messages

ANSWERS = json.loads((Path(__file__).parents[1] / "fixtures" / "lxd-answers.json").read_text())


class Response:
    """What pylxd keeps of an HTTP answer: status, body, text."""

    def __init__(self, status_code: int, body: object = None, text: str | None = None) -> None:
        self.status_code, self.body = status_code, body
        self.text = json.dumps(body) if text is None else text

    def json(self):
        if self.body is None:
            raise ValueError("not JSON")
        return self.body


def recorded(name: str) -> LXDAPIException:
    answer = ANSWERS[name]
    return LXDAPIException(Response(answer["status_code"], answer["body"]))


def test_a_failed_start_shows_the_operations_error_not_the_answers_status():
    error = messages.refusal("kvm-1: LXD could not start the container", recorded("kmod"))
    assert isinstance(error, LxdRefused)
    assert str(error).startswith("kvm-1: LXD could not start the container: Failed to load kernel module "
                                 "'nosuchmodule': Failed to run: modprobe -b nosuchmodule")
    assert "HTTP" not in str(error) and "200" not in str(error)
    assert "what to do:" in str(error) and "lxdkvm doctor" in str(error)
    assert error.lxd_message.startswith("Failed to load kernel module 'nosuchmodule'")


def test_a_missing_required_device_says_which_device_and_what_to_do():
    error = messages.refusal("h: LXD could not start the container", recorded("unixchar"))
    assert 'Failed to start device "nodev": The required device path doesn\'t exist' in str(error)
    assert 'required: "false"' in str(error)


def test_an_image_lxd_already_has_is_recognised():
    error = messages.refusal("importing image x failed", recorded("image_exists"))
    assert error.lxd_message == "Image with same fingerprint already exists"
    assert "point the alias at it" in str(error)


def test_a_refused_request_shows_its_error_field():
    error = messages.refusal("h: cannot read the container", recorded("not_found"))
    assert str(error) == "h: cannot read the container: Instance not found"


@pytest.mark.parametrize(("body", "status", "text", "expected"), [
    # the operation itself (GET /1.0/operations/ID): its `err`
    (ANSWERS["kmod"]["body"]["metadata"], 400, "", ANSWERS["kmod"]["body"]["metadata"]["err"]),
    # a /wait answer: the operation's `err`, even though the answer says "Success"
    (ANSWERS["unixchar"]["body"], 200, "", ANSWERS["unixchar"]["body"]["metadata"]["err"]),
    # an error answer with an empty metadata
    ({"type": "error", "error": "Project not found", "error_code": 404, "metadata": None}, 404, "",
     "Project not found"),
    # nothing said: the status, and what came back
    ({"type": "sync", "error": "", "metadata": {}}, 200, "{}", "LXD answered HTTP 200 without an error message: {}"),
    (None, 502, "Bad Gateway\n", "LXD answered HTTP 502 without an error message: Bad Gateway"),
    (None, 500, "", "LXD answered HTTP 500 without an error message"),
])
def test_lxd_message_finds_lxds_words_in_every_shape(body, status, text, expected):
    assert messages.lxd_message(body, status, text) == expected


def test_a_non_json_answer_still_names_the_status():
    error = messages.refusal("x", LXDAPIException(Response(503, None, "Service Unavailable")))
    assert str(error) == "x: LXD answered HTTP 503 without an error message: Service Unavailable"


def test_unknown_failures_get_no_hint():
    assert messages.explain("doing x", "Something new") == "doing x: Something new"


def test_split_image_fingerprint_is_sha256_of_metadata_then_rootfs(tmp_path):
    (tmp_path / "meta").write_bytes(b"metadata")
    (tmp_path / "root").write_bytes(b"rootfs" * 300_000)
    expected = hashlib.sha256(b"metadata" + b"rootfs" * 300_000).hexdigest()
    assert images.split_image_fingerprint(tmp_path / "meta", tmp_path / "root") == expected


POINTED = []


class KnownImage:
    """A daemon's images with the base image under another alias."""

    conn = "a connection"

    def by_alias(self, alias):
        return None

    def with_property(self, key, value):
        assert key == "lxdkvm.key"
        return {"fingerprint": "f" * 64, "aliases": ["lxdkvm/base"],
                "properties": {"lxdkvm.key": value, "description": "base"}}

    def point_alias(self, alias, fingerprint, description=""):
        POINTED.append((alias, fingerprint))

    def import_split(self, *args, **kwargs):
        raise AssertionError("an image LXD has is not uploaded again")


class Session:
    images = KnownImage()


def test_build_of_an_image_lxd_has_under_another_alias_adds_the_alias():
    said = []
    result = base.build(Session(), alias="other", report=said.append)
    assert (result.action, result.fingerprint) == ("alias added", "f" * 64)
    assert POINTED == [("other", "f" * 64)]
    assert said == ["LXD has this image as lxdkvm/base: adding other"]
