"""Where images come from: whole datasets as uint8 tensors (`datasets`: found on disk, in the system copy, or
downloaded), and the class orders and class-incremental Avalanche streams built over them (`streams`).

May import: clbench.core.
"""
