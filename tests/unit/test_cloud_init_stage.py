"""The readiness stage "cloud-init finished" reads cloud-init's status.json and result.json itself (the
files `cloud-init status` reads), so it must reach the same verdict: done, still running, or error."""

import json

from lxdkvm.hosts import readiness

STAGE = next(s for s in readiness.STAGES if s.name == "cloud-init finished")


def stage(start, finished, errors=()):
    return {"start": start, "finished": finished, "errors": list(errors)}


def output(stages, result=None, current=None):
    status = {"v1": {"datasource": "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud-net][dsmode=local]",
                     "stage": current, **stages}}
    text = json.dumps(status, indent=1) + "\n" + readiness.RESULT_SEPARATOR + "\n"
    return text + (json.dumps({"v1": {"datasource": "x", "errors": result}}) if result is not None else "")


NOT_RUN = stage(None, None)
DONE = {"init-local": stage(1.0, 1.2), "init": NOT_RUN, "modules-init": NOT_RUN, "modules-config": NOT_RUN,
        "modules-final": stage(2.0, 2.1)}


def test_done_when_every_started_stage_finished_without_errors():
    out = output(DONE, result=[])
    assert STAGE.check(out) == "" and STAGE.fatal(out) == ""


def test_still_running_while_a_stage_has_started_and_not_finished():
    out = output({**DONE, "modules-final": stage(2.0, None)}, result=[], current="modules-final")
    assert "still running (modules-final)" in STAGE.check(out)
    assert STAGE.fatal(out) == ""


def test_not_done_while_the_files_are_missing_or_half_written():
    assert "not written" in STAGE.check(output(DONE))
    assert "not written" in STAGE.check('{"v1": {"stag')
    assert STAGE.fatal(output(DONE)) == ""


def test_an_error_in_any_stage_fails_the_stage_for_good_with_the_message():
    broken = {**DONE, "init-local": stage(1.0, 1.2, ["('users-groups', KeyError('x'))"])}
    out = output(broken, result=["('users-groups', KeyError('x'))"])
    assert STAGE.fatal(out) == "status: error: ('users-groups', KeyError('x'))"


def test_an_error_only_in_result_json_is_an_error_too():
    assert STAGE.fatal(output(DONE, result=["final stage failed"])) == "status: error: final stage failed"
