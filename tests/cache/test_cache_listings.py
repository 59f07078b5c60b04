"""Directories an activity listed (a glob, `ls`, Python's import path) are read by it: the
names it found are compared, not only the files it opened, without those it made itself."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Akoflow


def states(akoflow: Akoflow, run: int) -> dict[str, str]:
    res = akoflow("status", str(run), "--json")
    assert res.returncode == 0, res.stderr
    return {a["name"]: a["state"] for a in json.loads(res.stdout)["activities"]}


def ran(counters: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in counters.iterdir()}


SIBLINGS = """\
name: siblings
spec:
  runtime: local
  activities:
    - name: seed
      run: mkdir in && echo seed > in/seed.txt
{siblings}
    - name: join
      dependsOn: [{names}]
      run: |
        echo ran >> {counters}/join
        cat s*.txt > joined.txt
"""
SIBLING = """\
    - name: {name}
      dependsOn: [seed]
      run: |
        echo ran >> {counters}/{name}
        for f in in/*; do cat "$f"; done > {name}.txt
        echo {name} >> {name}.txt
"""


def test_activities_listing_directories_side_by_side_are_reused(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """Four siblings list the directory their upstream made, the last one lists the data
    dir the siblings wrote to: a second run reuses each (the names are the same), and a
    third one whose upstream adds an empty file there runs them again."""
    counters = tmp_path / "counters"
    counters.mkdir()
    names = [f"s{i}" for i in range(4)]
    wf = tmp_path / "siblings.yaml"

    def write(seed: str = "mkdir in && echo seed > in/seed.txt") -> None:
        wf.write_text(
            SIBLINGS.format(
                siblings="".join(SIBLING.format(name=n, counters=counters) for n in names).rstrip(),
                names=", ".join(names),
                counters=counters,
            ).replace("mkdir in && echo seed > in/seed.txt", seed)
        )

    write()
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    planned = akoflow("run", str(wf), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["run"] == 0, planned.stdout
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    assert set(states(akoflow, 2).values()) == {"cached"}
    assert set(ran(counters).values()) == {1}
    joined = (state_dir / "runs" / "2-siblings" / "data" / "joined.txt").read_text()
    assert joined == "".join(f"seed\ns{i}\n" for i in range(4))
    write("mkdir in && echo seed > in/seed.txt && touch in/empty")  # one more name, no bytes
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    # Their fingerprints changed (what they read), so did their dependent's key.
    assert ran(counters) == {**{n: 2 for n in names}, "join": 2}
    assert set(states(akoflow, 3).values()) == {"succeeded"}


LISTER = """\
name: lister
spec:
  runtime: local
  activities:
    - name: count
      run: |
        echo ran >> {counters}/count
        ls | wc -l > ../count.txt
"""


def test_a_new_file_in_a_listed_data_dir_reruns_its_lister(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    counters = tmp_path / "counters"
    counters.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "one").write_text("1\n")
    wf = tmp_path / "lister.yaml"
    wf.write_text(LISTER.format(counters=counters))
    for _ in range(2):
        assert akoflow("run", str(wf), "--quiet", "--data-dir", str(data)).returncode == 0
    assert ran(counters) == {"count": 1}  # the same names: reused
    (data / "two").write_text("2\n")
    planned = akoflow("run", str(wf), "--dry-run", "--json", "--data-dir", str(data))
    reason = json.loads(planned.stdout)["activities"][0]["reason"]
    assert reason == "the names in the data dir (listed by run #2) changed"
    assert akoflow("run", str(wf), "--quiet", "--data-dir", str(data)).returncode == 0
    assert ran(counters) == {"count": 2}
    assert (tmp_path / "count.txt").read_text().strip() == "2"


ROOT_LISTERS = """\
name: listers
spec:
  runtime: local
  activities:
    - name: seed
      run: echo seed > seed.txt
{siblings}
"""
ROOT_LISTER = """\
    - name: {name}
      dependsOn: [seed]
      run: |
        echo ran >> {counters}/{name}
        ls > /dev/null
        {{ cat seed.txt; echo {name}; }} > {name}.txt
"""


def test_siblings_listing_the_data_dir_they_all_write_to_are_reused(
    akoflow: Akoflow, tmp_path: Path
) -> None:
    """Eight siblings (more than run at once) list the data dir while the others write
    their files there, as Python does when it imports (`python -c`): what a sibling made is
    not what a lister depends on, so each is reused by the next run, whichever order they
    ran in."""
    counters = tmp_path / "counters"
    counters.mkdir()
    names = [f"s{i}" for i in range(8)]
    wf = tmp_path / "listers.yaml"
    siblings = "".join(ROOT_LISTER.format(name=n, counters=counters) for n in names)
    wf.write_text(ROOT_LISTERS.format(siblings=siblings.rstrip()))
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    planned = akoflow("run", str(wf), "--dry-run", "--json")
    assert json.loads(planned.stdout)["run"] == 0, planned.stdout
    assert akoflow("run", str(wf), "--quiet").returncode == 0
    assert set(states(akoflow, 2).values()) == {"cached"}
    assert set(ran(counters).values()) == {1}
