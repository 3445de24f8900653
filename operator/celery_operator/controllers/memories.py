"""kopf's per-object records, not kept: our handlers need none.

kopf remembers every object it has seen until it is deleted: a copy of the operator's
memo, an error throttler and the state of daemons and indexes — about 1.1 KiB each
(tracemalloc), 115 MB at 110,000 objects. The operator registers only on.event handlers
(no daemons, timers, indexes or on.create/update/resume state), keeps what it needs in
its engines, and only reads the memo its startup handler filled. So each event gets a
fresh record over the shared memo, dropped once the event is handled.
"""

from __future__ import annotations

from kopf._cogs.structs import bodies, ephemera
from kopf._core.reactor import inventory


class Unremembered(inventory.ResourceMemories):
    async def recall(
        self,
        raw_body: bodies.RawBody,
        *,
        memobase: ephemera.AnyMemo | None = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> inventory.ResourceMemory:
        if memobase is None:
            return inventory.ResourceMemory(noticed_by_listing=noticed_by_listing)
        return inventory.ResourceMemory(noticed_by_listing=noticed_by_listing, memo=memobase)
