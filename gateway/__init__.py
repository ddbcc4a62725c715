"""The gateway: app factory, inbound pipeline, admin API, CLI and settings loading."""
