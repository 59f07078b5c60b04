"""Workflows built in Python: :class:`Workflow`, its :class:`Activity` objects and :func:`load`.

A workflow built here is the document a workflow file holds, as written (values are
inherited from the workflow's settings when the engine resolves it, never copied here). It is
checked by writing it as YAML and giving that to the very loader ``akoflow validate`` and
``akoflow run`` use, so both accept and refuse the same workflows, with the same
:class:`~akoflow.WorkflowValidationError` listing every problem.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from akoflow.service import Prepared
    from akoflow.spec.loader import SpecError

__all__ = ["Activity", "Workflow", "load"]

#: How errors name a workflow built in Python (it has no file or line).
BUILT_SOURCE = "<python>"

Scalar: TypeAlias = str | int | float | bool
Dependency: TypeAlias = "str | Activity"
Paths: TypeAlias = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass(eq=False)
class Activity:
    """One activity of a :class:`Workflow`: a bash script and where and how it runs.

    Made by :meth:`Workflow.activity`. Fields left ``None`` (or empty) are not written and so
    inherit the workflow's settings, as in a workflow file. The fields are those of the file
    (``memory_limit`` is ``memoryLimit``, ...); they may be changed until the workflow runs.
    """

    name: str
    run: str
    image: str | None = None
    runtime: str | None = None
    memory_limit: str | int | None = None
    cpu_limit: str | float | None = None
    depends_on: list[str] = field(default_factory=list)
    node_selector: str | dict[str, str] = field(default_factory=dict)
    keep_disk: bool | None = None
    mount_path: str | None = None
    retries: int | None = None
    timeout: str | float | None = None
    env: dict[str, Scalar] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    cache: bool | None = None
    """False: always run it, never reuse an earlier run's result (default: reuse)."""


@dataclass(eq=False)
class Workflow:
    """A workflow: its settings (defaults of its activities) and its activities, in order.

    >>> wf = Workflow("hello", runtime="local")
    >>> prep = wf.activity("prep", run="echo hi > greeting.txt", outputs=["greeting.txt"])
    >>> show = wf.activity("show", run="cat greeting.txt", depends_on=[prep])
    >>> wf.validate()

    ``storage_policy`` is a mapping as in the file (``{"type": "standalone",
    "storageClassName": "standard", "storageSize": "1Gi"}``); ``volumes`` are
    ``"local:remote"`` strings; durations (``timeout``) are seconds or text such as ``"5m"``.
    """

    name: str
    runtime: str | None = None
    image: str | None = None
    namespace: str | None = None
    mount_path: str | None = None
    storage_policy: dict[str, str] | None = None
    volumes: list[str] = field(default_factory=list)
    schedule: str | None = None
    alpha: float | None = None
    strategy: str | None = None
    collect: Literal["outputs", "all", "none"] | None = None
    retries: int | None = None
    timeout: str | float | None = None
    env: dict[str, Scalar] = field(default_factory=dict)
    notify: list[dict[str, Any]] = field(default_factory=list)  # spec.notify's webhooks
    activities: list[Activity] = field(default_factory=list)
    # What it was loaded from (text, source, document then): run as that same text while
    # unchanged, so it resumes and is recorded exactly as `akoflow run FILE` would.
    _origin: tuple[str, str, dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def activity(
        self,
        name: str,
        *,
        run: str,
        image: str | None = None,
        runtime: str | None = None,
        memory_limit: str | int | None = None,
        cpu_limit: str | float | None = None,
        depends_on: Dependency | Sequence[Dependency] = (),
        node_selector: str | Mapping[str, str] | None = None,
        keep_disk: bool | None = None,
        mount_path: str | None = None,
        retries: int | None = None,
        timeout: str | float | None = None,
        env: Mapping[str, Scalar] | None = None,
        inputs: Paths = (),
        outputs: Paths = (),
        cache: bool | None = None,
    ) -> Activity:
        """Add an activity (after the others) and return it.

        ``depends_on`` names activities or is the :class:`Activity` objects themselves;
        ``inputs`` and ``outputs`` are paths or globs relative to the run's data dir. Nothing
        is checked here: :meth:`validate` (and running) reports every problem at once.
        """
        act = Activity(
            name=name,
            run=run,
            image=image,
            runtime=runtime,
            memory_limit=memory_limit,
            cpu_limit=cpu_limit,
            depends_on=_names(depends_on),
            node_selector=dict(node_selector)
            if isinstance(node_selector, Mapping)
            else (node_selector or {}),
            keep_disk=keep_disk,
            mount_path=mount_path,
            retries=retries,
            timeout=timeout,
            env=dict(env or {}),
            inputs=_paths(inputs),
            outputs=_paths(outputs),
            cache=cache,
        )
        self.activities.append(act)
        return act

    def __getitem__(self, name: str) -> Activity:
        """The activity of that name (the first, if several have it)."""
        for act in self.activities:
            if act.name == name:
                return act
        raise KeyError(name)

    def __iter__(self) -> Iterator[Activity]:
        return iter(self.activities)

    def __len__(self) -> int:
        return len(self.activities)

    # ------------------------------------------------------------------ file form

    def to_dict(self) -> dict[str, Any]:
        """The workflow file's content as plain data (YAML keys, unset values left out)."""
        document, problems = _document(self)
        if problems:
            raise _invalid(problems, [])
        return document

    def to_yaml(self) -> str:
        """The workflow as an upstream-compatible workflow file; loading it gives back the
        same workflow. Raises :class:`~akoflow.WorkflowValidationError` only for values a
        file cannot hold (a Python object that is not text, a number or a boolean)."""
        return _dump(self.to_dict())

    def validate(self) -> None:
        """Check the workflow by the rules of ``akoflow validate``; raises
        :class:`~akoflow.WorkflowValidationError` with every problem (``errors``)."""
        self.prepare()

    def prepare(self) -> Prepared:
        """Validated, as the engine stores and runs it (the text, its hash, the resolved
        workflow). Internal to :func:`akoflow.run`; raises as :meth:`validate` does."""
        from akoflow import service
        from akoflow.spec.loader import WorkflowValidationError

        document, problems = _document(self)
        if self._origin is not None and not problems:
            text, source, loaded = self._origin
            if document == loaded:  # unchanged since load(): exactly the file
                return service.validate_text(text, source)
        try:
            # Values no file can hold were left out (None): the loader checks the rest.
            prepared = service.validate_text(_dump(document), BUILT_SOURCE)
        except WorkflowValidationError as exc:
            # Lines point into YAML nobody wrote: the path says where.
            raise _invalid(problems, exc.errors) from None
        if problems:
            raise _invalid(problems, [])
        return prepared

    def submission_text(self) -> str:
        """The text a server is sent: the loaded file itself while unchanged."""
        document, problems = _document(self)
        if problems:
            raise _invalid(problems, [])
        if self._origin is not None and document == self._origin[2]:
            return self._origin[0]
        return _dump(document)


def _names(deps: Dependency | Sequence[Dependency]) -> list[str]:
    if isinstance(deps, str | Activity):
        deps = [deps]
    return [dep.name if isinstance(dep, Activity) else dep for dep in deps]


def _paths(value: Paths) -> list[str]:
    if isinstance(value, str | os.PathLike):
        value = [value]
    return [os.fspath(v) for v in value]


# ----------------------------------------------------------------------- document


def _yaml_keys(model: type[Any]) -> dict[str, str]:
    """field name -> YAML key, from the loader's own model (one source of the names)."""
    return {name: info.alias or name for name, info in model.model_fields.items()}


def _document(wf: Workflow) -> tuple[dict[str, Any], list[SpecError]]:
    """The file's mapping, and the values no file can hold (each with its path)."""
    from akoflow.spec.loader import SpecError
    from akoflow.spec.model import ActivitySpec, WorkflowSpec

    problems: list[SpecError] = []
    spec_keys = _yaml_keys(WorkflowSpec)
    act_keys = _yaml_keys(ActivitySpec)
    spec: dict[str, Any] = {}
    for f in fields(Workflow):
        if f.name in ("name", "activities") or f.name.startswith("_"):
            continue
        _put(spec, spec_keys.get(f.name, f.name), getattr(wf, f.name), "spec", problems)
    activities: list[dict[str, Any]] = []
    acts = wf.activities
    if not isinstance(acts, list | tuple):  # replaced by a careless assignment
        problems.append(SpecError("spec.activities", "must be a list of activities"))
        acts = []
    for i, act in enumerate(acts):
        entry: dict[str, Any] = {}
        if not isinstance(act, Activity):  # appended by hand: wf.activity() makes them
            what = f"is a {type(act).__name__}, not an Activity (use wf.activity)"
            problems.append(SpecError(f"spec.activities[{i}]", what))
            continue
        for f in fields(Activity):
            value = getattr(act, f.name)
            if f.name == "depends_on":
                value = _names(value)
            required = f.name in ("name", "run")
            key = act_keys.get(f.name, f.name)
            _put(entry, key, value, f"spec.activities[{i}]", problems, always=required)
        activities.append(entry)
    spec["activities"] = activities
    name = _plain(wf.name, "name", problems)
    return {"name": name, "spec": spec}, problems


def _put(
    target: dict[str, Any],
    key: str,
    value: object,
    where: str,
    problems: list[SpecError],
    *,
    always: bool = False,
) -> None:
    """Write ``key`` unless unset (None, or empty: nothing to inherit over)."""
    if not always and (value is None or (isinstance(value, list | dict | tuple) and not value)):
        return
    target[key] = _plain(value, f"{where}.{key}", problems)


def _plain(value: object, path: str, problems: list[SpecError]) -> Any:
    """``value`` as YAML can hold it; anything else is a problem at ``path`` (and None)."""
    from akoflow.spec.loader import SpecError

    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, os.PathLike):
        value = os.fsdecode(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problems.append(
                SpecError(
                    path,
                    f"{value!r} is not valid Unicode text (a file name that is not UTF-8?): "
                    "workflow files are UTF-8",
                )
            )
            return None
        return value
    if isinstance(value, Mapping):
        return {
            _plain(k, path, problems): _plain(v, f"{path}.{k}", problems) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    problems.append(
        SpecError(
            path,
            f"a value of type {type(value).__name__!r} cannot be written in a workflow file: "
            "use text, a number or a boolean",
        )
    )
    return None


def _invalid(problems: list[SpecError], found: list[SpecError]) -> Exception:
    """One WorkflowValidationError: the unwritable values, then what the loader found
    elsewhere (without line numbers)."""
    from akoflow.spec.loader import SpecError, WorkflowValidationError

    seen = {p.path for p in problems}
    rest = [
        SpecError(e.path, e.message)
        for e in found
        if not any(e.path == p or e.path.startswith(p + ".") for p in seen)
    ]
    return WorkflowValidationError([*problems, *rest], BUILT_SOURCE)


def _dump(document: Mapping[str, Any]) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        # Lists indented under their key, as upstream's examples write them.
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Scripts as literal blocks (`run: |`); PyYAML quotes instead when a block cannot hold
        # the text exactly (trailing spaces, some control characters).
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    out: str = yaml.dump(
        dict(document),
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return out


# ------------------------------------------------------------------------------ load


def read_source(source: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, source name) of a workflow given as a path, or as YAML text (a string with a
    line break, or a one-line ``{...}`` mapping). A file is read as ``akoflow run`` reads it;
    raises :class:`~akoflow.WorkflowValidationError` when it cannot be."""
    from akoflow import service

    if isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{")):
        return source, "<string>"
    path = Path(source)
    return service.read_workflow_file(path), service.shown_path(path)


def load(source: str | os.PathLike[str]) -> Workflow:
    """Load a workflow file (a path) or YAML text into a :class:`Workflow`, validated by the
    rules of ``akoflow validate`` (:class:`~akoflow.WorkflowValidationError` with every
    problem, each with its file line). Running it unchanged runs the file itself: it resumes
    and is recorded as ``akoflow run FILE``."""
    import yaml

    from akoflow import service

    text, name = read_source(source)
    service.validate_text(text, name)
    try:
        loader: Any = yaml.CSafeLoader
    except AttributeError:  # pragma: no cover - PyYAML built without libyaml
        loader = yaml.SafeLoader
    raw = yaml.load(text, Loader=loader)
    wf = _from_document(raw)
    document, _ = _document(wf)
    wf._origin = (text, name, copy.deepcopy(document))
    return wf


def _from_document(raw: Mapping[str, Any]) -> Workflow:
    """A validated file's mapping as a :class:`Workflow` (values as written)."""
    from akoflow.spec.model import ActivitySpec, WorkflowSpec

    spec = dict(raw["spec"])
    fields_of_spec = {key: name for name, key in _yaml_keys(WorkflowSpec).items()}
    fields_of_act = {key: name for name, key in _yaml_keys(ActivitySpec).items()}
    wf = Workflow(str(raw["name"]))
    for key, value in spec.items():
        if key != "activities" and value is not None:
            setattr(wf, fields_of_spec[key], _normal(key, value))
    for entry in spec["activities"]:
        act = Activity(name=entry["name"], run=entry["run"])
        for key, value in entry.items():
            if value is not None:
                setattr(act, fields_of_act[key], _normal(key, value))
        wf.activities.append(act)
    return wf


def _normal(key: str, value: Any) -> Any:
    """A file's shorthand as the builder keeps it (``dependsOn: a`` is ``[a]``)."""
    if key in ("dependsOn", "inputs", "outputs") and isinstance(value, str):
        return [value]
    return value
