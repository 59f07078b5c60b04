"""Webhooks told by `akoflow run` (the real CLI) to a real HTTP receiver on loopback: each
run's end and each failed activity, bodies and signatures as docs/operating.md describes
them, retries after 500s and after a receiver that hangs, what the CLI leaves to the next
engine, and an engine SIGKILLed while its notification is in flight."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import wait_for
from tests.notify.conftest import SECRET, cli, deliveries, env, hook, query, workflow
from tests.notify.receiver import HANG, Receiver
from tests.server.conftest import Server, free_port


def test_success_failure_and_activity_failure(tmp_path: Path, receiver: Receiver) -> None:
    state = tmp_path / "state"
    quiet = Receiver()  # wants workflow.succeeded only: told nothing of a failed run
    try:
        notify = hook(receiver.url("/all?token=q-s3cr3t")) + hook(
            quiet.url(), events=["workflow.succeeded"], secret=None
        )
        good = workflow(tmp_path / "good.yaml", notify, ("a", "echo hi"))
        bad = workflow(
            tmp_path / "bad.yaml", notify, ("ok", "true"), ("boom", "echo no >&2; exit 7")
        )

        res = cli(state, "run", str(good), "-q")
        assert res.returncode == 0, res.stderr
        (ended,) = receiver.all()  # delivered before the CLI left
        assert ended.path == "/all?token=q-s3cr3t"
        doc = ended.json
        assert doc["event"] == "workflow.succeeded"
        assert doc["workflow"]["id"] == 1 and doc["workflow"]["name"] == "good"
        assert doc["workflow"]["state"] == "succeeded"
        assert doc["workflow"]["activities"] == {"succeeded": 1}
        assert doc["workflow"]["finishedAt"].endswith("Z") and doc["workflow"]["url"] is None
        assert "activity" not in doc
        assert ended.signed_with(SECRET) and not ended.signed_with(SECRET + "x")
        assert ended.headers["x-akoflow-delivery"] == doc["delivery"]
        assert ended.headers["x-akoflow-event"] == "workflow.succeeded"
        assert ended.headers["content-type"] == "application/json"
        (told,) = quiet.all()
        assert told.json["event"] == "workflow.succeeded"
        assert "x-akoflow-signature" not in told.headers  # no secret: no signature
        assert told.json["delivery"] != doc["delivery"]  # one delivery per webhook

        res = cli(state, "run", str(bad), "-q")
        assert res.returncode == 1
        bodies = {r.json["event"]: r for r in receiver.all()[1:]}
        assert sorted(bodies) == ["activity.failed", "workflow.failed"]
        act = bodies["activity.failed"].json
        assert act["workflow"]["id"] == 2
        assert act["activity"]["name"] == "boom"
        assert act["activity"]["state"] == "failed"
        assert act["activity"]["exitCode"] == 7
        assert "7" in act["activity"]["reason"]
        assert act["activity"]["runtime"] == "local"
        failed = bodies["workflow.failed"].json
        assert failed["workflow"]["state"] == "failed"
        assert failed["workflow"]["activities"]["failed"] == 1
        assert all(r.signed_with(SECRET) for r in bodies.values())
        assert len(quiet.all()) == 1
        assert SECRET not in res.stderr + res.stdout
        assert all(d["delivered_at"] is not None and d["tries"] == 1 for d in deliveries(state))
    finally:
        quiet.close()


def test_cancelled_run(tmp_path: Path, receiver: Receiver) -> None:
    state = tmp_path / "state"
    wf = workflow(tmp_path / "slow.yaml", hook(receiver.url()), ("sleeper", "sleep 60"))
    argv = [sys.executable, "-m", "akoflow", "run", str(wf), "-q", "--state-dir", str(state)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )
    try:
        wait_for(lambda: query(state, "SELECT 1 FROM activities WHERE state = 'running'"))
        res = cli(state, "cancel", "1")
        assert res.returncode == 0, res.stderr
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    (told,) = receiver.all()  # a cancelled activity is no failed one
    assert told.json["event"] == "workflow.cancelled"
    assert told.json["workflow"]["state"] == "cancelled"
    assert told.json["workflow"]["activities"] == {"cancelled": 1}
    assert told.signed_with(SECRET)


def test_a_receiver_failing_twice_then_taking_it(tmp_path: Path, receiver: Receiver) -> None:
    receiver.set_script([500, 503, 200])
    state = tmp_path / "state"
    url = f"http://user:pa55word@127.0.0.1:{receiver.port}/hook?key=q-s3cr3t"
    wf = workflow(tmp_path / "w.yaml", hook(url, events=["workflow.succeeded"]), ("a", "true"))
    res = cli(state, "run", str(wf), "-v")
    assert res.returncode == 0, res.stderr
    tries = receiver.all()
    assert [t.answered for t in tries] == [500, 503, 200]
    assert len({t.body for t in tries}) == 1  # the same bytes each time, the same delivery
    assert len({t.headers["x-akoflow-delivery"] for t in tries}) == 1
    assert all(t.signed_with(SECRET) for t in tries)
    assert tries[0].headers["authorization"].startswith("Basic ")  # the URL's user info
    log = res.stderr
    assert "HTTP 500" in log and "HTTP 503" in log and "try 1 of 8" in log
    assert f"http://127.0.0.1:{receiver.port}/…" in log
    for secret in (SECRET, "pa55word", "q-s3cr3t", "user:"):
        assert secret not in log + res.stdout
    (row,) = deliveries(state)
    assert row["tries"] == 3 and row["delivered_at"] is not None and row["last_error"] is None


def test_a_receiver_that_hangs_is_cut_and_tried_again(tmp_path: Path, receiver: Receiver) -> None:
    receiver.set_script([HANG, 200])
    state = tmp_path / "state"
    wf = workflow(
        tmp_path / "w.yaml", hook(receiver.url(), events=["workflow.succeeded"]), ("a", "true")
    )
    res = cli(state, "run", str(wf))
    assert res.returncode == 0, res.stderr
    hung, took = receiver.all()
    assert (hung.answered, took.answered) == (None, 200)
    assert hung.body == took.body
    assert "no answer within 1 s" in res.stderr
    (row,) = deliveries(state)
    assert row["tries"] == 2 and row["delivered_at"] is not None


def test_the_cli_leaves_what_it_cannot_send_to_the_next_engine(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The receiver is down while `akoflow run` ends: the CLI says it leaves the delivery in
    the state dir, and the next engine there (a server) delivers it, once."""
    receiver.set_script([500])
    state = tmp_path / "state"
    wf = workflow(
        tmp_path / "w.yaml", hook(receiver.url(), events=["workflow.failed"]), ("a", "false")
    )
    res = cli(
        state, "run", str(wf), environ=env(AKOFLOW_NOTIFY_BACKOFF="3", AKOFLOW_NOTIFY_WAIT="1")
    )
    assert res.returncode == 1
    assert "not delivered yet; left in the state dir for the next engine there" in res.stderr
    (row,) = deliveries(state)
    assert row["delivered_at"] is None and row["tries"] >= 1
    receiver.set_script([200])
    server = Server(state_dir=state, port=free_port(), env=env())
    server.start()
    try:
        wait_for(lambda: receiver.answered(200), timeout=30)
    finally:
        server.stop()
    (row,) = deliveries(state)
    assert row["delivered_at"] is not None
    assert len(receiver.answered(200)) == 1
    assert {r.json["delivery"] for r in receiver.all()} == {
        receiver.answered(200)[0].json["delivery"]
    }


def test_sigkill_while_a_notification_is_in_flight(tmp_path: Path, receiver: Receiver) -> None:
    """The run ended and was recorded; its webhook's request hangs when the engine is
    SIGKILLed. The next engine of the state dir sends that same delivery once its lease
    ends, and it is delivered exactly once."""
    receiver.set_script([HANG])
    state = tmp_path / "state"
    wf = workflow(
        tmp_path / "w.yaml", hook(receiver.url(), events=["workflow.succeeded"]), ("a", "true")
    )
    argv = [sys.executable, "-m", "akoflow", "run", str(wf), "-q", "--state-dir", str(state)]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(AKOFLOW_NOTIFY_TIMEOUT="30"),  # the engine waits for its answer when killed
    )
    try:
        wait_for(lambda: receiver.all())
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (row,) = deliveries(state)
    assert row["delivered_at"] is None and row["lease_until"] is not None
    receiver.set_script([200])
    # The lease of the killed engine's try runs its timeout and a margin: 30 + 15 s. This
    # engine must not send before then (it cannot know the try is over); the test moves
    # the lease back as if that time had passed, rather than wait for it.
    query(state, "UPDATE notify_deliveries SET lease_until = lease_until - 45")
    server = Server(state_dir=state, port=free_port(), env=env())
    server.start()
    try:
        wait_for(lambda: receiver.answered(200), timeout=30)
    finally:
        server.stop()
    hung, took = receiver.all()
    assert hung.answered is None and took.answered == 200
    assert took.body == hung.body and took.signed_with(SECRET)
    (row,) = deliveries(state)
    assert row["delivered_at"] is not None and row["tries"] == 2
