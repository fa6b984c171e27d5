"""`TrustedState.walk`, the one walk of the delegation tree, over role metadata held in memory
(`role` is what loads and verifies in the real class; here it looks the role up)."""

from __future__ import annotations

from pathlib import Path
import pytest
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, SuccinctRoles, Targets

from tufnotary.client.trusted import RoleNotDelegatedError, RoleNotPublishedError, TrustedState


class MemoryState(TrustedState):
    def __init__(self, roles: dict[str, Targets], unpublished: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__("acme/web", None, Path("/nonexistent"), None, 1)
        self.published, self.unpublished, self.loaded = roles, unpublished, []

    def role(self, role: str) -> Metadata[Targets]:
        self.loaded.append(role)
        if role in self.unpublished:
            raise RoleNotPublishedError(role)
        self.parent_of(role)  # as the real one does: it verifies with the delegator's keys
        return Metadata(self.published[role])


def _delegating(*names: str) -> Targets:
    roles = {n: DelegatedRole(n, [], 1, False, paths=["*"]) for n in names}
    return Targets(delegations=Delegations({}, roles=roles))


def _tree() -> MemoryState:
    """targets -> a, b; a -> a/x, b (again); b -> c, delegated but not published."""
    return MemoryState({
        "targets": _delegating("a", "b"),
        "a": _delegating("a/x", "b"),
        "b": _delegating("c"),
        "a/x": Targets(),
    }, unpublished={"c"})


def test_walk_is_breadth_first_each_role_once_with_its_first_delegator() -> None:
    state = _tree()
    visits = list(state.walk())
    assert [(v.role, v.parent) for v in visits] == [
        ("targets", "root"), ("a", "targets"), ("b", "targets"), ("a/x", "a"), ("c", "b")]
    assert [v.metadata is None for v in visits] == [False, False, False, False, True]
    assert state.loaded == ["targets", "a", "b", "a/x", "c"]  # each role loaded once


def test_parent_of_walks_named_roles_only_and_refuses_an_unknown_role() -> None:
    state = _tree()
    assert state.parent_of("a/x") == "a" and state.parent_of("b") == "targets"
    with pytest.raises(RoleNotDelegatedError, match="no role of acme/web delegates to 'z'"):
        state.parent_of("z")


def test_walk_into_hash_bins_all_one_or_none() -> None:
    bins = SuccinctRoles([], 1, 2, "bins")
    roles = {"targets": Targets(delegations=Delegations({}, succinct_roles=bins))}
    roles.update({name: Targets() for name in bins.get_roles()})
    state = MemoryState(roles)
    assert [(v.role, v.parent) for v in state.walk()] == [
        ("targets", "root"), *[(name, "targets") for name in bins.get_roles()]]
    assert [v.role for v in state.walk(bins=False)] == ["targets"]
    assert [v.role for v in state.walk(bin_for="app:1.0")] == ["targets", bins.get_role_for_target("app:1.0")]
    assert state.parent_of(bins.get_role_for_target("x")) == "targets"
