"""The revert plan of a revoked key, over role versions built in memory (signatures already judged)."""

from __future__ import annotations

from tuf.api.metadata import DelegatedRole, Delegations, Metadata, TargetFile, Targets

from tufnotary.client.history import RoleVersion
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
