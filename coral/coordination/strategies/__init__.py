"""The coordination strategies that ship with Coral Node (entry point group coral.strategies)."""
