"""Adapters: gRPC, HTTP/JSON, A2A, MCP, dashboard. They translate, nothing more."""
