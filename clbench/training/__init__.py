"""The evaluation recipe: train a fresh network from scratch on a (condensed) set, then test it.

May import: clbench.core, clbench.nets.
"""
