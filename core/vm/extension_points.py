"""Extension points of VM operations (ZStack's Pre/PostVmInstantiateResourceExtensionPoint)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from core.vm.spec import VmInstanceSpec

__all__ = [
    "PostVmInstantiateResourceExtensionPoint",
    "PreVmInstantiateResourceExtensionPoint",
    "VmInstanceSpec",
]


class PreVmInstantiateResourceExtensionPoint(ABC):
    """Prepares what a VM needs before its domain starts (network services, volumes…)."""

    @abstractmethod
    async def pre_before_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None:
        """Veto (raise) before anything is made."""

    @abstractmethod
    async def pre_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None: ...

    @abstractmethod
    async def pre_release_vm_resource(self, spec: VmInstanceSpec) -> None:
        """Undo pre_instantiate_vm_resource (the VM failed to start, or is released)."""


class PostVmInstantiateResourceExtensionPoint(ABC):
    """Runs after the domain started (e.g. security groups)."""

    @abstractmethod
    async def post_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None: ...

    @abstractmethod
    async def post_release_vm_resource(self, spec: VmInstanceSpec) -> None: ...
