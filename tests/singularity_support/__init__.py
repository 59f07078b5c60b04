"""Test-only stand-ins for Apptainer: real SIF files (sif.py) and the `apptainer` launcher."""
