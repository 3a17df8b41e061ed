"""Params: pure parsing and validation of query strings, forms, JSON and CSV rows."""
