"""AkôFlow: run YAML-defined DAGs of (containerized) activities on local, container, HPC and
Kubernetes runtimes from one workflow file."""

__version__ = "0.1.0"
__all__ = ["__version__"]
