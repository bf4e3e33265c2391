"""Walk a decision store's chain and report the first break."""

from __future__ import annotations

from serving.audit.chain import GENESIS, ChainReport, ChainWalker, parse_head
from serving.sqlite_store import SqliteDecisionStore


def verify_store(store: SqliteDecisionStore, head: str | None = None) -> ChainReport:
    """The whole chain of ``store``, the first break named. ``head``: a head filed earlier
    (``SEQ:MAC``, ``parcelrisk audit head``) that must still be in the chain, so a rewrite by
    someone holding the key is found too.

    A store whose older days were archived (``parcelrisk audit archive``) is walked from its
    archive's first day on, then across the cut into the hot rows.
    """
    filed = parse_head(head) if head is not None else None
    cut_seq, cut_mac, cut = store.chain_start()
    sources: list[str] = []
    if cut is None:
        walker = ChainWalker(store._key, start=(0, GENESIS), head=filed)
    else:
        from serving.audit.archive import walk_archive

        walker = ChainWalker(store._key, start=(0, GENESIS), head=filed)
        sources += walk_archive(cut["archive"], walker, cut_seq=cut_seq, cut_mac=cut_mac)
    if walker.report.problem is None:
        sources.append(str(store.path))
        walker.feed(store.chain_rows(after_seq=cut_seq))
    report = walker.finish()
    report.sources = sources
    return report
