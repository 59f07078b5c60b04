"""Crash-point torture: SIGKILL the real engine at seeded random instants, resume, and check
what must hold from the activities' own side effects (see runner.py for the entry point)."""
