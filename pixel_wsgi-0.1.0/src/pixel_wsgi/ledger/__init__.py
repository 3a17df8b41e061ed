"""The ledger: the rules of attribution, dedup, corrections, reversals, payouts and caps."""
