"""MCP front door: coral-server compatible tools for agents that speak MCP."""
