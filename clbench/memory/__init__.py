"""The rehearsal memory: a budget (`20ipc` or a total number of images) and a class-balanced store of
condensed images that shrinks older classes by the condenser's rule.

May import: clbench.core.
"""
