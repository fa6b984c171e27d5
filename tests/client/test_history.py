"""Joining target history with the server's audit records (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

from tufnotary.client.history import HistoryEntry, index_records, with_audit


def _entry(role: str, version: int) -> HistoryEntry:
    return HistoryEntry(role, version, "1.0", "sha256:" + "a" * 64, 3, None,
                        datetime(2030, 1, 1, tzinfo=timezone.utc), ("k",))


def test_records_index_by_role_and_version_and_a_deletion_forgets_the_old_collection() -> None:
    records = [
        {"seq": 1, "time": "t1", "action": "publish", "subject": "old", "details": {"roles": {"targets": 2}}},
        {"seq": 2, "time": "t2", "action": "delete", "subject": "admin", "details": {"roles": {"targets": 2}}},
        {"seq": 3, "time": "t3", "action": "publish", "subject": "alice", "client": "10.0.0.1",
         "details": {"roles": {"root": 1, "targets": 1, "snapshot": 1, "timestamp": 1}}},
        {"seq": 4, "time": "t4", "action": "publish", "subject": "anonymous",
         "details": {"roles": {"targets": 2, "targets/ci": 1}}},
        {"seq": 5, "time": "t5", "action": "renew", "subject": "server", "details": "not a dict"},
    ]
    index = index_records(records)
    assert index[("targets", 1)].subject == "alice" and index[("targets", 1)].client == "10.0.0.1"
    assert index[("targets", 2)].subject == "anonymous" and not index[("targets", 2)].authenticated
    assert index[("targets/ci", 1)].time == "t4"
    joined = with_audit([_entry("targets", 1), _entry("targets", 3)], index)
    assert joined[0].recorded is not None and joined[0].recorded.seq == 3
    assert joined[1].recorded is None  # a version the audit log does not know
