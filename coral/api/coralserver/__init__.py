"""coral-server 1.2's HTTP and websocket API (``/api/v1``, ``/ws/v1``) over ``coral.sessions``."""
