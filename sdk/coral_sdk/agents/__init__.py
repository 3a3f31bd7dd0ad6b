"""Model agents that ship with the SDK, one module per registry manifest.

Each module exposes ``create_agent(settings: ServeSettings)`` (used by
``coral-agent serve``) and runs itself with ``python -m`` (used by the node's
launcher), reading its manifest path from ``CORAL_AGENT_MANIFEST``.
"""
