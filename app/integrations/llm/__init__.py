"""LLM voters: one protocol, one vote schema, one retry and abstention policy for every SDK."""
