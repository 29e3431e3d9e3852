"""Reading records: the comparison table (`compare`: records grouped into `rows`, shown through one `table` in
every output format), paired statistics (`stats`), pictures (`plots`) and the diagnosis of condensed sets on
the seed paper's two claims (`diagnose`). The summary metrics themselves live in clbench.records.summary.

May import: everything up to clbench.protocol; never sweep or cli.
"""
