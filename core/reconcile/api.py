from __future__ import annotations

from core.kernel.query import QueryMessage
from core.reconcile.models import HostOrphanVO


class QueryHostOrphan(QueryMessage):
    """Objects of this lab on its hosts that no resource owns (kept until the grace period
    reconcile.orphanGracePeriod ends, for ever with Never), e.g. kind=domain."""

    model = HostOrphanVO
