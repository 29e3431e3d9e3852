"""The rehearsal memory: a budget (`20ipc` or a total number of images) and a class-balanced store of
condensed images that shrinks older classes by the condenser's rule (`store`), and what every set a condenser
returns is checked against before it enters it, with the one way a condenser is run (`checks`).

May import: clbench.core, clbench.condensers.
"""
