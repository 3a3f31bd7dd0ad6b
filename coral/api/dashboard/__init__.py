"""The operator dashboard: a static page served by the node, fed by one JSON snapshot.

``coral.node.subsystems.dashboard`` wires it into a node; see ``routes`` for the
endpoints and ``snapshot`` for what the page shows.
"""
