"""The schema of each SQL backend, as registries of migrations applied in order."""
