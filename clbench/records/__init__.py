"""What a run leaves behind: the JSON record (typed schema, atomic writes, summaries) and the snapshots beside
it (memories, synthetic sets, pictures).

May import: clbench.core.
"""
