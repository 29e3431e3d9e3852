"""Reading records: the comparison table (`compare`), paired statistics (`stats`), pictures (`plots`) and the
diagnosis of condensed sets on the seed paper's two claims (`diagnose`).

May import: everything up to clbench.protocol; never sweep or cli.
"""
