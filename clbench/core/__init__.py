"""Foundations every other part of clbench may import: the errors the CLI turns into one-line messages, the
one generic `Registry` (names, entry points, "did you mean"), options dataclasses and `key=value` parsing,
seeds derived from positions, the device-dependent speed switches, and atomic file writes.

May import: nothing else of clbench.
"""
