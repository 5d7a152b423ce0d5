"""Orders: the one order type (``order``), the SQL repository, the group-commit writer and the service owning
the buy path."""
