"""The public Python API's modules; use them through ``akoflow`` (``akoflow.Workflow``,
``akoflow.run``, ``akoflow.Client``...), which imports each one when first used."""
