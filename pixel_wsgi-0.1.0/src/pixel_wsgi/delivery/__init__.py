"""Delivery: conversions leave the ledger for publishers' postbacks, webhooks and ad platforms.

The ledger is the log. Each target keeps a cursor over transaction ids (they follow commit
order), so recording a conversion does no extra write; a worker (``pixel-wsgi deliver``, or
a thread with ``deliver_in_background=True``) reads the rows after the cursor, claims them,
sends them in batches with an idempotency key derived from the ledger, and records every
attempt. See :mod:`pixel_wsgi.delivery.model` for the types every part shares and
:mod:`pixel_wsgi.delivery.targets` for the platforms.
"""
