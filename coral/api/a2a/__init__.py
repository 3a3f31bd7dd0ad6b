"""A2A front door (inbound, protocol 1.0 with 0.3 compat) and outbound A2A proxies."""
