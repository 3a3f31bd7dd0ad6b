"""Persistence adapters: the only place with SQL and database drivers.

Each module implements the ports of one package (``agents_sqlite`` ->
``coral.agents.ports.AgentStore``, ``coordination_sqlite`` and ``seen_sqlite``
-> ``coral.coordination.ports``, ``teams_sqlite``/``teams_postgres`` -> ``coral.teams.ports``,
``ledger_sqlite``/``ledger_postgres`` -> ``coral.ledger.ports``,
``a2a_sqlite``/``a2a_postgres`` (and ``a2a_watch_postgres``),
``wait_cursors_sqlite``/``wait_cursors_postgres``, ``interop_sqlite``/
``interop_postgres`` and ``dashboard_sqlite``/``dashboard_postgres`` -> the
ports their adapters in ``coral.api`` define, ``federation_sqlite``/``federation_postgres``
-> ``coral.federation.ports``). ``sqlite`` is the shared connection with group commit;
``health`` keeps the CLI off the drivers.
The table of ports, adapters and in-memory twins is in ``docs/storage.md``.
"""
