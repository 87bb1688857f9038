"""The screens of ztui."""
