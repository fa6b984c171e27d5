"""The signer's metrics: `TimedKeyStore` times every key-store call by operation and outcome."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tufnotary.signer.errors import KeyNotFoundError
from tufnotary.signer.metrics import TimedKeyStore


class _Store:
    limit = 3

    def get_key(self, key_id: str) -> str:
        if key_id == "missing":
            raise KeyNotFoundError(f"the signer holds no key {key_id}")
        return key_id.upper()


def _calls(operation: str, outcome: str) -> float:
    labels = {"operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("tufnotary_signer_keystore_duration_seconds_count", labels) or 0.0


def test_every_call_is_timed_by_operation_and_outcome() -> None:
    timed = TimedKeyStore(_Store())
    ok, error = _calls("get_key", "ok"), _calls("get_key", "error")
    assert timed.get_key("a") == "A"
    assert timed.get_key("b") == "B"  # the kept wrapper still times
    with pytest.raises(KeyNotFoundError):
        timed.get_key("missing")
    assert (_calls("get_key", "ok") - ok, _calls("get_key", "error") - error) == (2, 1)
    assert timed.limit == 3  # plain attributes pass through untimed


def test_kept_children_are_the_labelled_metrics() -> None:
    """`rpc_timer` and `signature_counter` hand out the children `labels` would: they count into the same series."""
    from tufnotary.signer import metrics

    assert metrics.rpc_timer("SignBatch") is metrics.rpc_latency.labels("SignBatch")
    assert metrics.rpc_timer("SignBatch") is metrics.rpc_timer("SignBatch")
    labels = {"role": "snapshot", "algorithm": "ecdsa-sha2-nistp256"}
    before = REGISTRY.get_sample_value("tufnotary_signer_signatures_total", labels) or 0.0
    metrics.signature_counter("snapshot", "ecdsa-sha2-nistp256").inc(3)
    assert REGISTRY.get_sample_value("tufnotary_signer_signatures_total", labels) == before + 3
