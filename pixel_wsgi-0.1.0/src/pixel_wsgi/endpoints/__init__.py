"""Endpoints: the click, the pixels, the server-side APIs and health; WSGI in, WSGI out."""
