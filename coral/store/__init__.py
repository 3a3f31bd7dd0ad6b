"""Persistence adapters. Domain packages never import a database driver."""
