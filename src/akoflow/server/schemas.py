"""The JSON the API speaks, as pydantic models, kept apart from the store's records.

Upstream AkôFlow's shapes (``UpstreamWorkflow``, ``UpstreamActivity``, ``UpstreamRuntime``,
``SubmitResult``) keep upstream's field names and string timestamps so its clients work
unchanged; they gain extra fields (``state``, ``attempt``, ...) that old clients ignore. New
shapes use camelCase like upstream, with times as UNIX seconds.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

HELLO_YAML_B64 = (
    "bmFtZTogaGVsbG8Kc3BlYzoKICBhY3Rpdml0aWVzOgogICAgLSBuYW1lOiBzYXktaGVsbG8KICAgICAgcnVu"
    "OiBlY2hvIGhlbGxvCg=="
)  # name: hello / one activity `echo hello`


# ------------------------------------------------------------------------------- envelopes


class Envelope(BaseModel, Generic[T]):
    """Upstream's wrapper of every ``/akoflow-api`` answer."""

    data: T
    timestamp: int = Field(description="Server time of the answer, UNIX seconds.")


class Page(BaseModel, Generic[T]):
    """A page of a list: ``data`` stays a list (upstream's shape) and the paging is beside it."""

    data: list[T]
    timestamp: int
    total: int = Field(description="How many items match, over all pages.")
    limit: int
    offset: int


# ---------------------------------------------------------------------------------- errors


class ErrorItem(BaseModel):
    path: str = Field(
        description="Where: a workflow path like `spec.activities[2].dependsOn` (empty for a "
        "file-level problem such as YAML syntax), or the request field."
    )
    line: int | None = Field(description="1-based line in the workflow YAML, when known.")
    message: str


class ErrorBody(BaseModel):
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list)


# ------------------------------------------------------------------------------ submission


class WorkflowSubmission(BaseModel):
    """Upstream's request body: the workflow file, base64-encoded."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"workflow": HELLO_YAML_B64}]}
    )

    workflow: str = Field(
        description="The workflow YAML, base64 (standard alphabet; line breaks are ignored)."
    )


class SubmitResult(BaseModel):
    """Upstream's answer to a submission (no envelope, as upstream)."""

    workflow_entity: str = Field(description="The workflow's name.")
    workflow_id: int
    message: str


class ValidationResult(BaseModel):
    valid: bool
    name: str
    activities: int
    runtimes: list[str]


# ------------------------------------------------------------------------ upstream shapes


class UpstreamActivity(BaseModel):
    id: int
    workflowId: int
    status: int = Field(description="Upstream's code: 0 created, 1 running, 2 finished.")
    runtime: str
    name: str
    run: str
    memoryLimit: str
    cpuLimit: str
    dependsOn: list[str]
    nodeSelector: str
    keepDisk: bool
    createdAt: str
    startedAt: str
    finishedAt: str
    executionTime: str = Field(description="Seconds from start to end, as text.")
    # not in upstream:
    state: str = Field(description="AkôFlow's state: pending, ready, submitted, running, ...")
    position: int
    image: str
    attempt: int
    maxAttempts: int
    exitCode: int | None
    reason: str | None
    node: str | None


class StoragePolicyOut(BaseModel):
    type: str


class UpstreamWorkflowSpec(BaseModel):
    image: str
    namespace: str
    storageClassName: str
    storageSize: str
    storagePolicy: StoragePolicyOut
    mountPath: str
    activities: list[UpstreamActivity]
    createdAt: str
    startExecution: str
    endExecution: str
    executionTime: str
    longestActivity: str
    diskUsage: str


class Times(BaseModel):
    createdAt: float
    startedAt: float | None
    finishedAt: float | None


class HoldOut(BaseModel):
    runtime: str
    reason: str | None = Field(description="Why the runtime is NOT_READY.")
    notReadyFor: float | None = Field(description="Seconds it has been NOT_READY, when known.")
    activities: int = Field(description="Activities of this run that wait for it (READY).")


class UpstreamWorkflow(BaseModel):
    name: str
    status: int = Field(description="Upstream's code: 0 created, 1 running, 2 finished.")
    id: int
    spec: UpstreamWorkflowSpec
    # not in upstream:
    state: str = Field(description="pending, running, succeeded, failed or cancelled.")
    activityCount: int
    activityStates: dict[str, int] = Field(description="How many activities in each state.")
    cancelRequested: bool
    dataDir: str
    times: Times = Field(description="The same moments as UNIX seconds.")
    holds: list[HoldOut] = Field(
        default_factory=list,
        description="NOT_READY runtimes holding activities of this unfinished run, with the "
        "reason and for how long (`akoflow status`).",
    )


class UpstreamRuntime(BaseModel):
    name: str
    status: int = Field(description="Upstream's code: 0 NOT_READY, 1 READY.")
    metadata: dict[str, str] = Field(
        description="The runtime's `{NAME}_{KEY}` settings; secret values are `***`."
    )
    createdAt: str
    updatedAt: str
    deletedAt: str
    # not in upstream:
    kind: str
    state: str = Field(description="READY or NOT_READY.")
    reason: str | None


# ---------------------------------------------------------------------------- new shapes


class WorkflowStateOut(BaseModel):
    id: int
    name: str
    state: str
    status: int
    cancelRequested: bool


class DeletedWorkflowOut(WorkflowStateOut):
    report: dict[str, Any] = Field(
        description="What the deletion did: the `deleted` run's `freedBytes` on the server's "
        "host, what each runtime `removed` or why it was `left` (see POST /akoflow-api/gc)."
    )


class ActivityOut(BaseModel):
    id: int
    workflowId: int
    position: int
    name: str
    runtime: str
    image: str | None
    state: str
    status: int = Field(description="Upstream's code: 0 created, 1 running, 2 finished.")
    attempt: int = Field(description="The current (or last) attempt; 0 before the first.")
    maxAttempts: int
    exitCode: int | None
    reason: str | None
    node: str | None
    createdAt: float
    startedAt: float | None
    finishedAt: float | None


class ActivityPage(Page[ActivityOut]):
    nextAfter: int | None = Field(
        description="Pass as `after` for the next page (keyset on position); null at the end."
    )


class AttemptOut(BaseModel):
    number: int
    state: str = Field(description="submitted, running, succeeded, failed, cancelled or lost.")
    runtime: str
    node: str | None
    submittedAt: float
    startedAt: float | None
    finishedAt: float | None
    exitCode: int | None
    reason: str | None
    cpuSeconds: float | None
    maxRssBytes: int | None


class ActivityDetail(ActivityOut):
    run: str
    dependsOn: list[str]
    memoryLimit: str | None
    cpuLimit: str | None
    retries: int
    timeoutSeconds: float | None
    attempts: list[AttemptOut]


class LogChunkOut(BaseModel):
    id: int = Field(description="Row id: pass the last one seen as `after` to get what is new.")
    attempt: int
    stream: str
    offset: int = Field(description="Byte offset of this chunk in the attempt's stream.")
    data: str


class LogPage(BaseModel):
    data: list[LogChunkOut]
    timestamp: int
    nextAfter: int = Field(description="Pass as `after` to continue.")
    complete: bool = Field(
        description="True when no more output will come (the activity, or the requested "
        "attempt, has ended) and this page holds the last of it."
    )


class MetricSample(BaseModel):
    attempt: int
    ts: float
    cpuPercent: float | None
    memoryBytes: int | None


class AttemptUsage(BaseModel):
    number: int
    cpuSeconds: float | None = Field(description="CPU time of the attempt (wait4), if known.")
    maxRssBytes: int | None
    peakMemoryBytes: int | None = Field(description="Highest sampled memory.")
    meanCpuPercent: float | None


class MetricsOut(BaseModel):
    samples: list[MetricSample]
    attempts: list[AttemptUsage]
    total: int
    limit: int
    offset: int


class NodeOut(BaseModel):
    runtime: str
    name: str
    status: str
    cpuCapacity: float | None
    memoryCapacity: int | None
    cpuUsage: float | None
    memoryUsage: int | None
    updatedAt: float


class LineageNode(BaseModel):
    id: str
    label: str
    type: str = Field(
        description="`activity`, `file` (generated by an activity), `preExisting`, `inputs`, "
        "or `ambiguous`: a file version no activity can be said to have generated."
    )
    state: str
    candidates: list[str] = Field(
        default_factory=list,
        description="Ambiguous files: the activities that may have generated it "
        "(each also a `candidate` edge).",
    )
    reason: str = Field(default="", description="Ambiguous files: why it is not decided.")


class LineageEdge(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    label: str


class Lineage(BaseModel):
    nodes: list[LineageNode]
    edges: list[LineageEdge]
