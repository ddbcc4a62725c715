"""Agents: the runtime, the embedded offline model, and (later) abilities and workflows."""
