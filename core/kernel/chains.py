"""Flow chains declared in configuration (ZStack's ``createVmWorkFlowElements``…).

A service declares each chain it runs with its default list of dotted flow
class paths.  The list a run uses is, in this order:

1. ``config.toml``'s ``[chains]`` entry for the chain, if any, else the default;
2. then every :class:`FlowChainContributor` plugin's insertions, in registry
   order: a flow placed before or after a named flow of the list (or at its
   end), unless the list already holds it.

So a config edit or an installed plugin adds a step to "create VM" without a
line of the service changing.  Every chain is built once at node start, so a
bad class path stops start-up with a message naming the chain and the path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.kernel.events import EventBus
from core.kernel.flow import FlowChain, FlowChainBuilder, FlowConfigError, FlowJournal
from core.kernel.flow_data import FlowData


class ChainConfigError(ValueError):
    """config.toml's [chains] or a plugin's insertion does not fit the declared chains."""


@dataclass(frozen=True)
class FlowInsertion:
    chain: str
    flow: str
    """Dotted class path of the flow to insert."""
    before: str | None = None
    after: str | None = None
    """Dotted class path of the flow it goes before/after; neither means at the end."""


class FlowChainContributor(ABC):
    """An extension point: a plugin that inserts its flows into declared chains."""

    @abstractmethod
    def flow_insertions(self) -> list[FlowInsertion]: ...


@dataclass(frozen=True)
class ChainTraits:
    """What a declared chain runs over, and what recovery does with it after a crash."""

    data: type[FlowData] | None = None
    """Its FlowData class; a chain with one is durable (written to the flow journal)."""
    resumable: bool = False
    """After a crash, run on from the interrupted step (its steps are idempotent and it
    has no way back, e.g. an expunge) instead of rolling back."""


class ChainCatalog:
    def __init__(self) -> None:
        self._defaults: dict[str, list[str]] = {}
        self._traits: dict[str, ChainTraits] = {}
        self._builders: dict[str, FlowChainBuilder] = {}

    def declare(
        self, name: str, default_flows: Sequence[str], traits: ChainTraits | None = None
    ) -> None:
        if name in self._defaults:
            raise ChainConfigError(f"flow chain {name} is declared twice")
        self._defaults[name] = list(default_flows)
        self._traits[name] = traits or ChainTraits()

    def traits(self, name: str) -> ChainTraits:
        return self._traits.get(name) or ChainTraits()

    def declared(self) -> list[str]:
        return sorted(self._defaults)

    def builder(self, name: str) -> FlowChainBuilder:
        return self._builders[name]

    def flows(self, name: str) -> list[str]:
        """The flow class paths a run of ``name`` uses."""
        return list(self._builders[name].flow_paths)

    def build_all(
        self,
        configured: Mapping[str, Any],
        insertions: Iterable[FlowInsertion],
        source: str = "config.toml",
    ) -> None:
        """Build every declared chain; ``source`` names the config file in errors."""
        for name, flows in configured.items():
            if name not in self._defaults:
                raise ChainConfigError(
                    f"{source} [chains] sets chain {name}, which no plugin declares "
                    f"(declared chains: {', '.join(self.declared()) or 'none'})"
                )
            if not isinstance(flows, list) or not all(isinstance(f, str) for f in flows):
                raise ChainConfigError(f"{source} [chains] {name} must be a list of class paths")
        lists = {
            name: list(configured.get(name, default)) for name, default in self._defaults.items()
        }
        for ins in insertions:
            _insert(lists, ins)
        try:
            self._builders = {name: FlowChainBuilder(name, flows) for name, flows in lists.items()}
        except FlowConfigError as exc:
            raise ChainConfigError(str(exc)) from exc

    def chain(
        self, name: str, events: EventBus | None, journal: FlowJournal | None = None
    ) -> FlowChain:
        try:
            builder = self._builders[name]
        except KeyError:
            raise ChainConfigError(f"no flow chain {name} is declared") from None
        traits = self._traits[name]
        return builder.build(
            events=events,
            journal=journal if traits.data is not None else None,
            data_type=traits.data,
            resumable=traits.resumable,
        )


def _insert(lists: dict[str, list[str]], ins: FlowInsertion) -> None:
    flows = lists.get(ins.chain)
    if flows is None:
        raise ChainConfigError(
            f"a plugin inserts {ins.flow} into chain {ins.chain}, which no plugin declares"
        )
    if ins.flow in flows:
        return
    anchor = ins.before or ins.after
    if anchor is None:
        flows.append(ins.flow)
        return
    if anchor not in flows:
        raise ChainConfigError(
            f"a plugin inserts {ins.flow} {'before' if ins.before else 'after'} {anchor} "
            f"in chain {ins.chain}, but the chain has no such flow"
        )
    index = flows.index(anchor)
    flows.insert(index if ins.before else index + 1, ins.flow)
