"""The operations journal: every operation (API call or background chain run) with its
flow chains, step by step, live on ``/operation/update`` and kept in ``operation_log``."""
