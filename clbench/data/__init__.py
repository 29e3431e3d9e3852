"""Where images come from: the datasets clbench knows and whole datasets as uint8 tensors (`datasets`: the
`DATASETS` registry, found on disk, in the system copy, or downloaded), the file formats and folder layouts they
are read from (`readers`), condensed sets in the reference code's file layouts (`setfiles`), and the class
orders and class-incremental Avalanche streams built over them (`streams`).

May import: clbench.core.
"""
