"""What a new snapshot's live state replays from the results log (``results_to_replay``)."""

from __future__ import annotations

from serving.scoring import results_to_replay


class _Results:
    """A results log: (seq, declaration, inspected_at us, illicit, revenue)."""

    def __init__(self, rows):
        self.rows = rows

    def results_since(self, seq, inspected_from_us=None, decisions=None):
        return [
            r
            for r in self.rows
            if r[0] > seq and (inspected_from_us is None or r[2] >= inspected_from_us)
        ]


ROWS = [
    (1, "{}", 50, True, None),  # before the cutoff, stored before the export: in the snapshot
    (2, "{}", 150, False, None),  # after the cutoff
    (3, "{}", 60, True, 5.0),  # before the cutoff, stored after the export: late
    (4, "{}", 170, False, None),
]


def test_a_snapshot_that_knows_its_last_result_replays_the_late_ones_too() -> None:
    log = _Results(ROWS)
    assert [r[0] for r in results_to_replay(log, 100, None)] == [2, 4]
    assert [r[0] for r in results_to_replay(log, 100, 2)] == [2, 3, 4]  # in seq order, once
    assert [r[0] for r in results_to_replay(log, 100, 4)] == [2, 4]
