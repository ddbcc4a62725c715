"""Escalation: handoffs to people (triggers, business hours and routing grow here)."""
