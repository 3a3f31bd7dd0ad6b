"""Model agents: TRM, OpenTSLM, AgentFlow. Need the optional extra `models`."""
