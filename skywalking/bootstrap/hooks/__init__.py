"""Hooks imported by pre-fork servers (e.g. uWSGI) to start the agent in each worker."""
