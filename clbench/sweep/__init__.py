"""Grids of runs on an engine: the TOML spec expanded into jobs with stable ids (`spec`), the sweep folder, one
job on a worker and the gathering of records (`jobs`), driving a whole sweep (`driver`), and the engines that
run the jobs (`local_pool`: local processes, `ray_tasks`: Ray, `slurm_array`: Slurm through submitit, all built
on `engine`), named and built from the spec by `launchers`.

May import: everything up to clbench.report; never cli.
"""
