"""Command line entry points of the SkyWalking agent (``sw-python``)."""
