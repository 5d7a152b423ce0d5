"""Orders in SQL: the repository, the group-commit writer and the service owning the buy path."""
