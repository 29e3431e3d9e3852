"""Grids of runs on an engine: the TOML spec expanded into jobs and gathered back into records (`spec`), the
engines that run them (`local_pool`: local processes, `ray_tasks`: Ray, `slurm_array`: Slurm through submitit,
all built on `engine`), and `launchers`, which names them and builds one from the spec.

May import: everything up to clbench.report; never cli.
"""
