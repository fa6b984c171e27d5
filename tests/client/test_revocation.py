"""The revert plan of a revoked key, over role versions built in memory (signatures already judged);
`Admin.revoke --since` against the fake server."""

from __future__ import annotations

from pathlib import Path

import pytest
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, TargetFile, Targets

from tests.client.conftest import COLLECTION, Client
from tests.client.fake_server import FakeServer
from tufnotary.client.admin import Admin
from tufnotary.client.errors import UsageError
from tufnotary.client.history import RoleVersion
from tufnotary.client.publisher import target_from_file
from tufnotary.client.revocation import plan_reverts

LEAKED, GOOD, OTHER = "leaked-key", "good-key", "other-key"


def _t(digest: str) -> TargetFile:
    return TargetFile(len(digest), {"sha256": digest * 8}, "x")


def versions(*steps: tuple[tuple[str, ...], dict[str, str]], role: str = "targets/ci") -> list[RoleVersion]:
    """One RoleVersion per (signers, {path: digest}) step, versions 1, 2, ..."""
    out = []
    for n, (signers, targets) in enumerate(steps, 1):
        md = Metadata(Targets(version=n, targets={p: _t(d) for p, d in targets.items()}))
        out.append(RoleVersion(role, n, md, tuple(signers), (), True))
    return out


def test_changed_entry_reverts_to_the_last_trusted_value_and_new_entry_is_dropped() -> None:
    plan = plan_reverts(versions(
        ((GOOD,), {"1.0": "aaaa", "2.0": "bbbb"}),
        ((LEAKED,), {"1.0": "eeee", "2.0": "bbbb", "evil": "eeee"}),
    ), frozenset({LEAKED}))
    by_path = {r.path: r for r in plan.reverts}
    assert set(by_path) == {"1.0", "evil"}  # 2.0 was only re-signed unchanged: it keeps its provenance
    assert by_path["1.0"].action == "revert" and by_path["1.0"].restored.hashes["sha256"] == "aaaa" * 8
    assert (by_path["1.0"].introduced_in, by_path["1.0"].trusted_version) == (2, 1)
    assert by_path["evil"].action == "drop" and by_path["evil"].restored is None


def test_removal_by_the_revoked_key_is_restored() -> None:
    plan = plan_reverts(versions(((GOOD,), {"1.0": "aaaa"}), ((LEAKED,), {})), frozenset({LEAKED}))
    assert [(r.path, r.action) for r in plan.reverts] == [("1.0", "restore")]


def test_nothing_trusted_ever_signed_it_so_it_is_dropped() -> None:
    plan = plan_reverts(versions(((LEAKED,), {}), ((LEAKED,), {"nightly": "cccc"})), frozenset({LEAKED}))
    (r,) = plan.reverts
    assert (r.path, r.action, r.trusted_version) == ("nightly", "drop", None)


def test_a_cosigned_version_or_a_later_trusted_change_is_not_reverted() -> None:
    cosigned = versions(((GOOD,), {"1.0": "aaaa"}), ((LEAKED, OTHER), {"1.0": "dddd"}))
    assert plan_reverts(cosigned, frozenset({LEAKED})).reverts == []
    fixed = versions(((GOOD,), {"1.0": "aaaa"}), ((LEAKED,), {"1.0": "eeee"}), ((GOOD,), {"1.0": "ffff"}))
    assert plan_reverts(fixed, frozenset({LEAKED})).reverts == []
    # The attacker changed it back to what a trusted key signed: nothing to undo.
    same = versions(((GOOD,), {"1.0": "aaaa"}), ((LEAKED,), {"1.0": "eeee"}), ((LEAKED,), {"1.0": "aaaa"}))
    assert plan_reverts(same, frozenset({LEAKED})).reverts == []


def test_unsigned_version_counts_as_tainted_and_roles_are_separate() -> None:
    a = versions(((GOOD,), {"x": "aaaa"}), ((), {"x": "eeee"}), role="targets/a")
    b = versions(((GOOD,), {"x": "aaaa"}), role="targets/b")
    plan = plan_reverts(a + b, frozenset({LEAKED}))
    assert [(r.role, r.path, r.action) for r in plan.reverts] == [("targets/a", "x", "revert")]
    assert plan.for_role("targets/b") == []


def test_delegations_changed_by_the_revoked_key_are_reported() -> None:
    steps = versions(((GOOD,), {}), ((LEAKED,), {}))
    steps[1].metadata.signed.delegations = Delegations({}, roles={"targets/ci/x": DelegatedRole(
        "targets/ci/x", [], 1, False, paths=["*"])})
    assert plan_reverts(steps, frozenset({LEAKED})).delegations_changed == [("targets/ci", 2)]


def test_since_keeps_what_the_key_signed_before_the_leak_and_undoes_the_rest() -> None:
    steps = versions(
        ((GOOD,), {}),
        ((LEAKED,), {"nightly": "cccc"}),  # the CI key's honest work, before the leak
        ((LEAKED,), {"nightly": "cccc", "1.0": "aaaa"}),
        ((LEAKED,), {"nightly": "eeee", "1.0": "aaaa", "evil": "eeee"}),  # the attacker, from v4
    )
    plan = plan_reverts(steps, frozenset({LEAKED}), since=4)
    by_path = {r.path: r for r in plan.reverts}
    assert set(by_path) == {"nightly", "evil"}
    assert by_path["nightly"].action == "revert" and by_path["nightly"].trusted_version == 3
    assert by_path["nightly"].restored.hashes["sha256"] == "cccc" * 8
    assert by_path["evil"].action == "drop"
    assert (plan.since, plan.spared) == (4, [("targets/ci", 2), ("targets/ci", 3)])
    # Without --since the same history loses the pre-leak tags too.
    everything = plan_reverts(steps, frozenset({LEAKED}))
    assert {r.path for r in everything.reverts} == {"nightly", "1.0", "evil"}
    assert (everything.since, everything.spared) == (1, [])


def test_since_does_not_trust_a_version_nobody_validly_signed() -> None:
    steps = versions(((GOOD,), {"1.0": "aaaa"}), ((), {"1.0": "eeee"}), ((LEAKED,), {"1.0": "eeee"}))
    plan = plan_reverts(steps, frozenset({LEAKED}), since=3)
    (r,) = plan.reverts
    assert (r.path, r.action, r.introduced_in, r.trusted_version) == ("1.0", "revert", 2, 1)
    assert plan.spared == []


def test_since_below_one_is_refused_by_the_planner() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_reverts(versions(((LEAKED,), {})), frozenset({LEAKED}), since=0)


def _publish(client: Client, tmp_path: Path, name: str) -> None:
    artifact = tmp_path / name
    artifact.write_bytes(name.encode())
    client.publisher.stage_add(COLLECTION, target_from_file(name, artifact))
    client.publisher.publish(COLLECTION)


@pytest.fixture
def targets_history(client: Client, tmp_path: Path) -> str:
    """targets v1 (empty), v2 `a`, v3 `b`, v4 `c`, all signed by the one targets key only."""
    keyid = client.publisher.init(COLLECTION).targets_keyid
    for name in ("a", "b", "c"):
        _publish(client, tmp_path, name)
    return keyid


@pytest.mark.parametrize("since", [0, -1, 5, 99])
def test_revoke_refuses_a_since_outside_the_roles_versions_and_changes_nothing(
    client: Client, fake_server: FakeServer, targets_history: str, since: int
) -> None:
    stored = {role: dict(files) for role, files in fake_server.collections[COLLECTION].files.items()}
    keys_before = client.keys.list()
    with pytest.raises(UsageError) as e:
        Admin(client.publisher).revoke(COLLECTION, targets_history, since=since)
    assert f"--since {since} is not a version" in e.value.message
    assert "targets 4" in e.value.message and "between 1 and 4" in e.value.message
    assert "nothing was changed" in e.value.message
    assert {role: dict(files) for role, files in fake_server.collections[COLLECTION].files.items()} == stored
    assert client.keys.list() == keys_before


def test_revoke_dry_run_with_since_plans_to_keep_the_earlier_versions(
    client: Client, fake_server: FakeServer, targets_history: str
) -> None:
    stored = {role: dict(files) for role, files in fake_server.collections[COLLECTION].files.items()}
    result = Admin(client.publisher).revoke(COLLECTION, targets_history, since=3, dry_run=True)
    assert result.submitted is None
    assert [(r.path, r.action) for r in result.plan.reverts] == [("b", "drop"), ("c", "drop")]
    assert (result.plan.since, result.plan.spared) == (3, [("targets", 1), ("targets", 2)])
    assert {role: dict(files) for role, files in fake_server.collections[COLLECTION].files.items()} == stored
