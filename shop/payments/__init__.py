"""Payments: checkout, the signed webhook that confirms them, and the built-in dev provider."""
