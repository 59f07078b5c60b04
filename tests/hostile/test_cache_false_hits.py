"""Hostile pass on result caching (issue 18): false cache hits. Each test runs a workflow
through the real CLI, changes something its activity's result depends on, runs it again and
checks the activity ran (a side-effect counter outside the data dir) and its output is what a
real run gives (a false hit would show it `cached` and restore its stale output)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Akoflow, cli_env


def ran(counters: Path, name: str) -> int:
    path = counters / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def states(akoflow: Akoflow, run: int) -> dict[str, str]:
    res = akoflow("status", str(run), "--json")
    assert res.returncode == 0, res.stderr
    return {a["name"]: a["state"] for a in json.loads(res.stdout)["activities"]}


def run_ok(akoflow: Akoflow, *args: str, env: dict[str, str] | None = None) -> None:
    res = akoflow("run", *args, "--quiet", env=env)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture
def counters(tmp_path: Path) -> Path:
    path = tmp_path / "counters"
    path.mkdir()
    return path


GLOB_AFTER_UNCACHED = """\
name: parts
spec:
  runtime: local
  activities:
    - name: split
      cache: false
      run: |
        mkdir -p parts
        for i in $(seq "$(cat {how_many})"); do echo "$i" > "parts/$i"; done
    - name: total
      dependsOn: [split]
      run: |
        echo ran >> {counters}/total
        cat parts/* > total.txt
"""


def test_a_new_file_in_a_directory_it_globbed_reruns_it(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, counters: Path
) -> None:
    """The docs' own advice: an activity reading outside the data dir is `cache: false`. It
    reruns and writes one more part; its dependent globs the directory: same parts read,
    one new part unread. It must run again (its output changes), not be restored."""
    how_many = tmp_path / "how_many"
    how_many.write_text("2\n")
    wf = tmp_path / "parts.yaml"
    wf.write_text(GLOB_AFTER_UNCACHED.format(how_many=how_many, counters=counters))
    run_ok(akoflow, str(wf))
    assert (state_dir / "runs" / "1-parts" / "data" / "total.txt").read_text() == "1\n2\n"
    how_many.write_text("3\n")
    run_ok(akoflow, str(wf))
    total = (state_dir / "runs" / "2-parts" / "data" / "total.txt").read_text()
    assert (total, ran(counters, "total"), states(akoflow, 2)["total"]) == (
        "1\n2\n3\n",
        2,
        "succeeded",
    )


LISTING = """\
name: listing
spec:
  runtime: local
  activities:
    - name: index
      run: |
        echo ran >> {counters}/index
        ls samples > index.txt
"""


def test_a_listing_of_a_directory_sees_a_new_file(
    akoflow: Akoflow, tmp_path: Path, counters: Path
) -> None:
    data = tmp_path / "data"
    (data / "samples").mkdir(parents=True)
    (data / "samples" / "s1").write_text("x\n")
    wf = tmp_path / "listing.yaml"
    wf.write_text(LISTING.format(counters=counters))
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    (data / "samples" / "s2").write_text("y\n")
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    assert ((data / "index.txt").read_text(), ran(counters, "index")) == ("s1\ns2\n", 2)


DECLARED_GLOB = """\
name: merge
spec:
  runtime: local
  activities:
    - name: merge
      inputs: ["in/*.txt"]
      outputs: [merged.txt]
      run: |
        echo ran >> {counters}/merge
        cat in/*.txt > merged.txt
"""


def test_declared_glob_inputs_see_a_new_match(
    akoflow: Akoflow, tmp_path: Path, counters: Path
) -> None:
    """Without observation the docs say: declare your inputs. Declared as a glob, a file that
    matches it later is an input that changed."""
    data = tmp_path / "data"
    (data / "in").mkdir(parents=True)
    (data / "in" / "a.txt").write_text("a\n")
    wf = tmp_path / "merge.yaml"
    wf.write_text(DECLARED_GLOB.format(counters=counters))
    env = cli_env(AKOFLOW_OBSERVE="off")
    run_ok(akoflow, str(wf), "--data-dir", str(data), env=env)
    (data / "in" / "b.txt").write_text("b\n")
    planned = akoflow("run", str(wf), "--data-dir", str(data), "--dry-run", env=env)
    assert planned.returncode == 0, planned.stderr
    run_ok(akoflow, str(wf), "--data-dir", str(data), env=env)
    assert ((data / "merged.txt").read_text(), ran(counters, "merge")) == ("a\nb\n", 2)
    assert "1 of 1 activities would run" in planned.stdout


LINK_READER = """\
name: linked
spec:
  runtime: local
  activities:
    - name: reader
      run: |
        echo ran >> {counters}/reader
        cat reference.txt > copy.txt
"""


def test_a_link_in_the_data_dir_whose_target_changed(
    akoflow: Akoflow, tmp_path: Path, counters: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    target = tmp_path / "elsewhere.txt"
    target.write_text("v1\n")
    (data / "reference.txt").symlink_to(target)
    wf = tmp_path / "linked.yaml"
    wf.write_text(LINK_READER.format(counters=counters))
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    target.write_text("v2\n")
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    assert ((data / "copy.txt").read_text(), ran(counters, "reader")) == ("v2\n", 2)


LINK_MADE_UPSTREAM = """\
name: linkup
spec:
  runtime: local
  activities:
    - name: link
      run: ln -s {target} reference.txt
    - name: reader
      dependsOn: [link]
      run: |
        echo ran >> {counters}/reader
        cat reference.txt > copy.txt
"""


def test_a_link_made_upstream_whose_target_changed(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, counters: Path
) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("v1\n")
    wf = tmp_path / "linkup.yaml"
    wf.write_text(LINK_MADE_UPSTREAM.format(target=target, counters=counters))
    run_ok(akoflow, str(wf))
    target.write_text("v2\n")
    run_ok(akoflow, str(wf))
    copy = (state_dir / "runs" / "2-linkup" / "data" / "copy.txt").read_text()
    assert (copy, ran(counters, "reader")) == ("v2\n", 2)


IN_PLACE = """\
name: inplace
spec:
  runtime: local
  activities:
    - name: fetch
      cache: false
      run: |
        cat {source} > f.txt
        touch -d @4102444800 f.txt
    - name: mark
      dependsOn: [fetch]
      run: |
        echo ran >> {counters}/mark
        sed -i 's/^/> /' f.txt
"""


def test_an_upstream_version_it_rewrote_in_place_is_its_input(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, counters: Path
) -> None:
    """`mark` edits upstream's file in place (it reads it, then writes it). Upstream's
    version carries a time from the future (as `tar x`, `cp -p`, `rsync -t`, `unzip` can
    leave); the same happens without it when upstream wrote the file in the last 50 ms
    before `mark` was dispatched, which a quick local upstream does."""
    source = tmp_path / "source.txt"
    source.write_text("one\n")
    wf = tmp_path / "inplace.yaml"
    wf.write_text(IN_PLACE.format(source=source, counters=counters))
    run_ok(akoflow, str(wf))
    assert (state_dir / "runs" / "1-inplace" / "data" / "f.txt").read_text() == "> one\n"
    source.write_text("two\n")
    run_ok(akoflow, str(wf))
    got = (state_dir / "runs" / "2-inplace" / "data" / "f.txt").read_text()
    assert (got, ran(counters, "mark")) == ("> two\n", 2)


def test_a_non_utf8_input_name_changed_in_content_reruns_its_reader(
    akoflow: Akoflow, tmp_path: Path, counters: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    odd = os.path.join(os.fsencode(data), b"\xff\xfe in.txt")
    Path(os.fsdecode(odd)).write_bytes(b"v1\n")
    wf = tmp_path / "odd.yaml"
    wf.write_text(
        "name: odd\nspec:\n  runtime: local\n  activities:\n    - name: r\n      run: |\n"
        f"        echo ran >> {counters}/r\n"
        "        cat \"$(printf '\\377\\376 in.txt')\" > out.txt\n"
    )
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    assert ran(counters, "r") == 1  # unchanged: reused
    Path(os.fsdecode(odd)).write_bytes(b"v2\n")  # same size
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    assert ((data / "out.txt").read_text(), ran(counters, "r")) == ("v2\n", 2)


def test_a_deleted_input_reruns_its_reader(
    akoflow: Akoflow, tmp_path: Path, counters: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("x\n")
    wf = tmp_path / "del.yaml"
    wf.write_text(
        "name: del\nspec:\n  runtime: local\n  activities:\n    - name: r\n      run: |\n"
        f"        echo ran >> {counters}/r\n"
        "        if [ -f in.txt ]; then cat in.txt; else echo none; fi > out.txt\n"
    )
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    (data / "in.txt").unlink()
    run_ok(akoflow, str(wf), "--data-dir", str(data))
    assert ((data / "out.txt").read_text(), ran(counters, "r")) == ("none\n", 2)


def test_another_data_dir_with_other_content_reruns_and_same_content_reuses(
    akoflow: Akoflow, tmp_path: Path, counters: Path
) -> None:
    wf = tmp_path / "dd.yaml"
    wf.write_text(
        "name: dd\nspec:\n  runtime: local\n  activities:\n    - name: r\n      run: |\n"
        f"        echo ran >> {counters}/r\n"
        "        tr a-z A-Z < in.txt > out.txt\n"
    )
    dirs = {}
    for name, content in (("a", "abc\n"), ("b", "xyz\n"), ("c", "abc\n")):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        (dirs[name] / "in.txt").write_text(content)
    run_ok(akoflow, str(wf), "--data-dir", str(dirs["a"]))
    run_ok(akoflow, str(wf), "--data-dir", str(dirs["b"]))
    assert (dirs["b"] / "out.txt").read_text() == "XYZ\n" and ran(counters, "r") == 2
    run_ok(akoflow, str(wf), "--data-dir", str(dirs["c"]))
    assert (dirs["c"] / "out.txt").read_text() == "ABC\n" and ran(counters, "r") == 2
    assert states(akoflow, 3) == {"r": "cached"}
