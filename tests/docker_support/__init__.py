"""Test-only helpers: a private dockerd and locally built images (nothing is ever pulled)."""
