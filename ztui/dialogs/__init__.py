"""Modal dialogs of ztui, one per module."""
