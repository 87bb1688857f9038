"""A test plugin's own migrations (tests/core/kernel/test_migrations.py)."""
