"""Coral Node: the reference node daemon for the Coral Protocol."""

__version__ = "0.1.0"
PROTOCOL_VERSION = "coral/1"
