"""People: members and identities, roles and permissions, credentials."""
