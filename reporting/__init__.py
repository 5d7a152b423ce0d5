"""Read-only reporting across packages: the dashboard figures, derived from SQL and live presence."""
