"""The agent directory: registration, lookup and search of signed agent records."""
