"""The fingerprint's pure parts: what changes a key, what never does, what a miss names."""

from __future__ import annotations

import dataclasses
import json

from akoflow.cache import fingerprint as fpr
from akoflow.spec import load_workflow
from akoflow.spec.workflow import Activity, Workflow

WF = """\
name: wf
spec:
  runtime: local
  env: {A: "1"}
  activities:
    - name: prep
      run: echo hi > a.txt
    - name: use
      dependsOn: [prep]
      memoryLimit: 1Gi
      run: cat a.txt
"""


def key(wf_text: str = WF, *, settings: str = "s", upstream: str = "u") -> dict[str, str]:
    wf = load_workflow(wf_text, source="wf.yaml")
    act = wf.activities[1]
    return fpr.components(wf, act, runtime=settings, upstream={"prep": upstream})


def test_each_part_changes_the_key_and_is_named() -> None:
    base = key()
    cases = {
        "the script": key(WF.replace("cat a.txt", "cat a.txt | wc")),
        "the environment": key(WF.replace('A: "1"', 'A: "2"')),
        "the CPU or memory limits": key(WF.replace("1Gi", "2Gi")),
        "the runtime kind or its settings": key(settings="t"),
        "upstream prep's fingerprint": key(upstream="v"),
    }
    for what, parts in cases.items():
        assert fpr.key_of(parts) != fpr.key_of(base)
        assert fpr.changed(base, parts) == [what]
    # Not part of it: retries and timeouts change how it is run, not what it computes.
    same = key(WF.replace("      memoryLimit: 1Gi", "      memoryLimit: 1Gi\n      retries: 3"))
    assert fpr.key_of(same) == fpr.key_of(base)


def test_the_recipe_version_is_in_every_key() -> None:
    base = key()
    assert base["recipe"] == fpr.digest(fpr.RECIPE)
    newer = dict(base, recipe=fpr.digest("akoflow-cache/2"))
    assert fpr.key_of(newer) != fpr.key_of(base)


def test_runtime_settings_leave_out_secrets_and_operational_ones() -> None:
    base = {"HPC_A_HOST_CLUSTER": "c1", "HPC_A_MAX_PARALLEL": "4", "HPC_A_PASSWORD": "x"}
    digest = fpr.runtime_settings("hpc", base, "HPC_A_")
    assert fpr.runtime_settings("hpc", {**base, "HPC_A_MAX_PARALLEL": "64"}, "HPC_A_") == digest
    assert fpr.runtime_settings("hpc", {**base, "HPC_A_PASSWORD": "rotated"}, "HPC_A_") == digest
    assert fpr.runtime_settings("hpc", {**base, "HPC_A_HOST_CLUSTER": "c2"}, "HPC_A_") != digest
    assert fpr.runtime_settings("docker", base, "HPC_A_") != digest  # the kind counts
    assert "x" not in digest and len(digest) == 64  # only a digest is kept


def test_the_fingerprint_is_the_key_and_the_contents_read() -> None:
    k = fpr.key_of(key())
    read = [("a.txt", "1" * 64)]
    assert fpr.fingerprint(k, read) == fpr.fingerprint(k, list(reversed(read + read)))
    assert fpr.fingerprint(k, [("a.txt", "2" * 64)]) != fpr.fingerprint(k, read)
    wf = load_workflow(WF, source="wf.yaml")
    assert not dataclasses.replace(wf.activities[0], cache=False).cache
    assert (
        load_workflow(
            WF.replace("      run: cat", "      cache: false\n      run: cat"), source="w"
        )
        .activities[1]
        .cache
        is False
    )


def test_inherited_variables_a_local_script_names_are_in_its_key() -> None:
    text = WF.replace("run: cat a.txt", 'run: echo "$HOME ${REF_DIR}/x $A $PWD $AKOFLOW_WORKDIR"')
    wf = load_workflow(text, source="wf.yaml")
    act = wf.activities[1]
    env = {"HOME": "/h", "REF_DIR": "/r", "A": "engine", "PWD": "/p", "AKOFLOW_WORKDIR": "/w"}
    # A is the workflow's own (in the env part already); PWD and AKOFLOW_* are set per run.
    assert fpr.inherited(act, "local", env) == [("HOME", "/h"), ("REF_DIR", "/r")]
    assert fpr.inherited(act, "docker", env) == []  # a container does not inherit them

    def parts(environ: dict[str, str]) -> dict[str, str]:
        found = fpr.inherited(act, "local", environ)
        return fpr.components(wf, act, runtime="s", upstream={"prep": "u"}, environ=found)

    changed = parts({**env, "REF_DIR": "/other"})
    assert fpr.changed(parts(env), changed) == [
        "an environment variable it names, inherited from the engine"
    ]
    assert fpr.key_of(parts({**env, "PWD": "/q", "UNNAMED": "x"})) == fpr.key_of(parts(env))
    # None named: the key is as it was before inherited variables were keyed.
    assert "inherited" not in key()


def test_how_the_local_runtime_starts_attempts_is_no_part_of_a_key() -> None:
    """Its spawners and its line change when attempts start, never what they compute."""
    digest = fpr.runtime_settings("local", {}, "LOCAL_")
    for name, value in (("SPAWNERS", "1"), ("QUEUE_AHEAD", "0"), ("CGROUPS", "off")):
        assert fpr.runtime_settings("local", {f"LOCAL_{name}": value}, "LOCAL_") == digest


def fan_in(n: int, *, names: list[str] | None = None) -> tuple[Workflow, Activity]:
    names = names if names is not None else [f"u{i}" for i in range(n)]
    acts = [f"    - name: {json.dumps(name)}\n      run: 'true'\n" for name in names]
    deps = ", ".join(json.dumps(name) for name in names)
    text = "name: wf\nspec:\n  activities:\n" + "".join(acts)
    text += f"    - name: join\n      dependsOn: [{deps}]\n      run: 'true'\n"
    wf = load_workflow(text, source="wf.yaml")
    return wf, wf.activities[-1]


def test_digest_of_many_is_the_digest_of_the_list_whatever_the_chunks() -> None:
    odd = ['a"b', "back\\slash", "caf\u00e9", "\u4e2d", "nl\n", "nul\x00", "z"]
    for n in (0, 1, 2, 999, 1000, 1001, 2001, 3000):
        names = [odd[i % len(odd)] + str(i) for i in range(n)]
        pairs = [(name, str(i)) for i, name in enumerate(names)]
        assert fpr.digest_of_many(names) == fpr.digest(names)
        assert fpr.digest_of_many(pairs) == fpr.digest(pairs)


def test_a_big_fan_in_keeps_two_digests_of_its_upstreams_not_one_part_each() -> None:
    n = fpr.BIG_FAN_IN
    wf, join = fan_in(n)
    fps = {f"u{i}": f"fp{i}" for i in range(n)}
    parts = fpr.components(wf, join, runtime="s", upstream=fps)
    assert not [k for k in parts if k.startswith(fpr.UPSTREAM)]
    assert len(parts) < 20  # what an entry stores, whatever its fan-in
    # An upstream fingerprint changes the key; the miss says one of them changed.
    other = fpr.components(wf, join, runtime="s", upstream={**fps, "u7": "new"})
    assert fpr.key_of(other) != fpr.key_of(parts)
    assert fpr.changed(parts, other) == [
        "the fingerprint of one or more of its upstream activities"
    ]
    # The order it names them in does not count; another upstream does, said once.
    wf2, join2 = fan_in(n, names=[f"u{i}" for i in reversed(range(n))])
    assert fpr.components(wf2, join2, runtime="s", upstream=fps) == parts
    wf3, join3 = fan_in(n, names=[f"u{i}" for i in range(1, n + 1)])
    more = fpr.components(wf3, join3, runtime="s", upstream={**fps, f"u{n}": "fpn"})
    assert fpr.changed(parts, more) == ["its dependencies"]
    # One fewer upstream: a part each again; against the digests, "its dependencies" once.
    wf4, join4 = fan_in(n - 1)
    small = fpr.components(wf4, join4, runtime="s", upstream=fps)
    assert len([k for k in small if k.startswith(fpr.UPSTREAM)]) == n - 1
    assert fpr.changed(parts, small) == ["its dependencies"]
    assert fpr.changed(small, parts) == ["its dependencies"]


def test_the_same_upstream_activities_kept_the_old_way_are_not_a_change() -> None:
    # Entries made before big fan-ins kept two digests have a part per upstream: against
    # them, the same upstream activities and fingerprints are no change of dependencies.
    n = fpr.BIG_FAN_IN
    wf, join = fan_in(n)
    fps = {f"u{i}": f"fp{i}" for i in range(n)}
    now = fpr.components(wf, join, runtime="s", upstream=fps)
    old = {k: v for k, v in now.items() if k not in (fpr.UPSTREAM_NAMES, fpr.UPSTREAMS)}
    old.update({fpr.UPSTREAM + name: fp for name, fp in fps.items()})
    keyed = ["how its upstream activities are keyed (a newer AkôFlow)"]
    assert fpr.changed(old, now) == keyed
    assert fpr.changed(now, old) == keyed
    old[fpr.UPSTREAM + "u3"] = "other"
    assert fpr.changed(old, now) == ["the fingerprint of one or more of its upstream activities"]
    assert fpr.changed(dict(old, script="x"), now) == [
        "the script",
        "the fingerprint of one or more of its upstream activities",
    ]


def test_a_sentence_names_the_first_few_and_how_many_more() -> None:
    assert fpr.sentence(["a"], 2) == "a"
    assert fpr.sentence(["a", "b"], 2) == "a and b"
    assert fpr.sentence(["a", "b", "c"], 2) == "a, b and 1 more"
    assert fpr.sentence(["a", "b", "c"]) == "a, b and c"
