"""Grids of runs on an engine: the TOML spec expanded into jobs and gathered back into records (`spec`), and
the engines that run them (`launchers`: local processes, Ray, Slurm through submitit).

May import: everything up to clbench.report; never cli.
"""
