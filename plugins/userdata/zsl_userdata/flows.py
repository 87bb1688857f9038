"""The flow this plugin inserts into the router's post-create chain (after the router's
own SNAT sync): every entry of the guest network, replayed to a new or restarted agent."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.kernel.flow import NoRollbackFlow
from core.virtual_router.extension_points import GUEST, RouterData
from zsl_userdata import router
from zsl_userdata.contract import UserdataEntryTO
from zsl_userdata.entries import all_entries, served


class VirtualRouterSyncUserdataOnStartFlow(NoRollbackFlow):
    """The router serves the user data of every NIC on its guest network (nothing is sent
    when the network does not get ``Userdata`` from the virtual router)."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        access = router.access_of(data.node)
        uuid, l3 = data.appliance["uuid"], data.guest_l3

        def read(session: Session) -> tuple[str, list[UserdataEntryTO]] | None:
            if not served(session, l3):
                return None
            return access.router_nics(session, uuid)[GUEST]["mac"], all_entries(session, l3)

        found = await data.node.db.run(read)
        if found is not None:
            await router.sync(data.client(), *found)


SYNC_FLOW = (
    f"{VirtualRouterSyncUserdataOnStartFlow.__module__}.VirtualRouterSyncUserdataOnStartFlow"
)
