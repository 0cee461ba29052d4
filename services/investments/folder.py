"""The portfolio folder: a loop in the background of the investments service that folds
the portfolio entries each flow leaves pending into the portfolio's report totals
(`InvestmentStore.fold_pending`), batch by batch, so that flows recorded at once never
write the same totals documents (docs/investments.md, "report read model").

Woken by every commit of this process that left entries pending (and after every worker,
as any BackgroundLoop), and at least every poll interval for those of other instances.
Several instances folding at once lose a race on the same documents and retry later."""

from collections import defaultdict
from collections.abc import Callable

from pymongo.database import Database

from shared.background import BackgroundLoop

# Pending entries folded into the portfolio's totals per transaction.
FOLD_BATCH = 500

# This process's folders by database name: a commit that left portfolio entries pending
# wakes them at once (folders of other processes find them on their periodic pass).
_folders_to_wake: dict[str, set[Callable[[], None]]] = defaultdict(set)


def wake_folders(db: Database) -> None:
    """Called after a transaction that left portfolio entries pending in `db` committed."""
    for wake in list(_folders_to_wake[db.name]):
        wake()


class PortfolioFolder(BackgroundLoop):
    identifier = "portfolio-folder"

    def begin(self, store) -> None:
        self.store = store
        self.db_name = store.db.name
        _folders_to_wake[self.db_name].add(self.wake)

    def work(self) -> bool:
        return self.store.repository().fold_pending() >= FOLD_BATCH  # more may be waiting

    def stop(self):
        if hasattr(self, "db_name"):
            _folders_to_wake[self.db_name].discard(self.wake)
        super().stop()

    kill = stop
