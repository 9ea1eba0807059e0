"""The lab keeps connection records as JSON text: list-like reads, decoded copies, and no work for the GC."""

from __future__ import annotations

import gc
import json

from simulator.metering.kept_records import KeptRecords


def metered_record(i: int) -> dict:
    direction = {"wire": i, "handshake": 1, "record_overhead": 2, "payload": 3, "closure": 4}
    return {"client": f"127.0.0.1:{i}", "traffic": {"client_to_lb": dict(direction), "lb_to_client": dict(direction),
                                                    "records": {"client_to_lb": {"total": 1}}}}


def test_reads_like_a_list_and_hands_out_copies() -> None:
    kept = KeptRecords()
    for i in range(5):
        kept.append(metered_record(i))
    kept.append({"client": "x"}, line='{"client":"given"}')  # the caller's own JSON text is kept as is
    assert len(kept) == 6 and kept
    assert kept[0] == metered_record(0) and kept[-1] == {"client": "given"}
    assert [r["client"] for r in kept[2:4]] == ["127.0.0.1:2", "127.0.0.1:3"]
    assert [r["client"] for r in reversed(kept)][:2] == ["given", "127.0.0.1:4"]
    assert len(list(kept)) == 6
    kept[0]["traffic"]["client_to_lb"]["wire"] = 99  # a reader changing its copy changes nothing kept
    assert kept[0]["traffic"]["client_to_lb"]["wire"] == 0
    kept.clear()
    assert len(kept) == 0 and list(kept) == [] and not kept


def test_a_ring_keeps_the_last_ones() -> None:
    kept = KeptRecords(maxlen=3)
    for i in range(10):
        kept.append({"i": i})
    assert [r["i"] for r in kept] == [7, 8, 9] and kept[0] == {"i": 7} and kept[1:] == [{"i": 8}, {"i": 9}]


def test_odd_values_are_kept_as_text() -> None:
    kept = KeptRecords()
    kept.append({"when": gc})  # not JSON: kept by its str(), not refused
    assert kept[0]["when"].startswith("<module 'gc'")


def tracked_from(root: object) -> int:
    """The garbage-collector-tracked objects reachable from `root`, itself included, not counting classes
    (whose attributes lead into every module)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type) or not gc.is_tracked(obj):
            continue
        seen.add(id(obj))
        stack.extend(gc.get_referents(obj))
    return len(seen)


def test_kept_records_add_nothing_for_the_garbage_collector() -> None:
    """As dicts, 2,000 metered records are 6,000 containers for every full collection to visit; as text,
    none. Counted from the structure itself, so what other threads allocate or free meanwhile (a lab of an
    earlier test file in this worker) cannot move it: a count of the whole heap once read 4,519."""
    def kept(keep: list | KeptRecords) -> int:
        for i in range(2000):
            keep.append(metered_record(i))
        gc.collect()  # untracks the dicts that hold scalars only, as a full collection would
        return tracked_from(keep)

    as_dicts = kept([])
    assert as_dicts > 5000  # the record, its traffic and traffic.records: tracked (flat dicts of scalars are not)
    assert kept(KeptRecords()) < 10  # the object and its two lists


def test_the_unbounded_list_compresses_full_blocks_and_reads_the_same() -> None:
    """The ledger keeps every record: beyond BLOCK lines they are compressed, and every read is unchanged."""
    from simulator.metering.kept_records import BLOCK

    n = 3 * BLOCK + 17
    kept, plain = KeptRecords(), [metered_record(i) for i in range(n)]
    for record in plain:
        kept.append(record)
    assert len(kept) == n and kept._blocks and len(kept._lines) == 17
    stored = sum(len(b) for b in kept._blocks) + sum(len(line) for line in kept._lines)
    assert stored < sum(len(json.dumps(r)) for r in plain) / 5  # what the blocks save
    assert list(kept) == plain and list(reversed(kept)) == plain[::-1]
    for i in (0, 1, BLOCK - 1, BLOCK, 2 * BLOCK + 5, n - 1, -1, -18, -n):
        assert kept[i] == plain[i], i
    for s in (slice(None), slice(5, None), slice(BLOCK + 3, None), slice(BLOCK + 3, 2 * BLOCK + 9), slice(n + 4, None),
              slice(10, -3), slice(-20, None), slice(None, 7), slice(0, n, 5), slice(2 * BLOCK, BLOCK)):
        assert kept[s] == plain[s], s
    try:
        kept[n]
    except IndexError:
        pass
    else:
        raise AssertionError("kept[n] must raise IndexError")
    kept.clear()
    assert len(kept) == 0 and list(kept) == []
    kept.append({"i": 1})
    assert kept[:] == [{"i": 1}]
