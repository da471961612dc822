"""Clients for the speech server."""
