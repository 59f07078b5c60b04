"""The Kubernetes runtime (``k8s``, ``k8s-aws``, ...): activities as Jobs through the API.

Modules: :mod:`.settings` (``{NAME}_*`` variables, TLS), :mod:`.manifests` (pure builders of
the Job/PVC/Namespace/ServiceAccount objects), :mod:`.status` (pure readers of Job and Pod
status), :mod:`.watch` (list-then-watch per namespace), :mod:`.listing` (the pod's listings
of its volume for provenance, and the filter of its log), :mod:`.runtime` (the adapter).
"""

from akoflow.runtimes.kubernetes.runtime import KubernetesRuntime

__all__ = ["KubernetesRuntime"]
