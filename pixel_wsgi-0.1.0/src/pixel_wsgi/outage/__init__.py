"""The outage spool: what the store could not take, kept on local disk, and its replay."""
