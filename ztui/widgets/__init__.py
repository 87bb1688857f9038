"""Custom widgets of ztui, one per module."""
