"""Integrations with host frameworks and servers: PasteDeploy, Flask, Pyramid."""
