"""Every model of the core, imported so that Base.metadata is complete
(the migrations test compares it with the migrated schema)."""

from core.appliance.models import ApplianceVmVO
from core.cluster.models import ClusterVO
from core.config.models import GlobalConfigVO
from core.gc.models import GarbageCollectorVO
from core.host.models import HostVO
from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.kernel.flow_journal import FlowRunVO
from core.management_node.models import ManagementNodeVO
from core.network.l2.models import L2NetworkClusterRefVO, L2NetworkVO
from core.network.l3.models import IpRangeVO, L3NetworkDnsVO, L3NetworkVO, UsedIpVO, VmNicVO
from core.network.service.models import NetworkServiceL3NetworkRefVO, NetworkServiceProviderVO
from core.offering.models import DiskOfferingVO, InstanceOfferingVO
from core.operation_log.models import OperationLogVO
from core.reconcile.models import HostOrphanVO
from core.snapshot.models import VolumeSnapshotVO
from core.storage.models import (
    BackupStorageVO,
    ImageCacheVO,
    PrimaryStorageClusterRefVO,
    PrimaryStorageVO,
)
from core.tag.models import SystemTagVO, UserTagVO
from core.virtual_router.models import VirtualRouterOfferingVO
from core.vm.models import VmInstanceVO
from core.volume.models import VolumeVO
from core.zone.models import ZoneVO

__all__ = [
    "ApplianceVmVO",
    "BackupStorageVO",
    "ClusterVO",
    "DiskOfferingVO",
    "FlowRunVO",
    "GarbageCollectorVO",
    "GlobalConfigVO",
    "HostOrphanVO",
    "HostVO",
    "ImageBackupStorageRefVO",
    "ImageCacheVO",
    "ImageVO",
    "InstanceOfferingVO",
    "IpRangeVO",
    "L2NetworkClusterRefVO",
    "L2NetworkVO",
    "L3NetworkDnsVO",
    "L3NetworkVO",
    "ManagementNodeVO",
    "NetworkServiceL3NetworkRefVO",
    "NetworkServiceProviderVO",
    "OperationLogVO",
    "PrimaryStorageClusterRefVO",
    "PrimaryStorageVO",
    "SystemTagVO",
    "UsedIpVO",
    "UserTagVO",
    "VirtualRouterOfferingVO",
    "VmInstanceVO",
    "VmNicVO",
    "VolumeSnapshotVO",
    "VolumeVO",
    "ZoneVO",
]
