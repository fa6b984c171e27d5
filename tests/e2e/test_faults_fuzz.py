"""Fuzzing the publish endpoint of the real gunicorn server with hypothesis: thousands of generated
uploads (mutated valid metadata, wrong roles, random bytes), bounded in time. Zero 5xx, and nothing
invalid accepted: after every accepted upload the collection still verifies with ngclient from its
first root."""

from __future__ import annotations

import copy
import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.e2e.faults import NO_AUTH, assert_whole
from tests.e2e.tuf_http import get, new_collection
from tests.stack import start_stack

TIME_BUDGET = 20.0  # seconds of generated uploads; later examples are skipped
COLLECTION = "fuzz/publish"
ROLES = ["root", "targets", "snapshot", "timestamp", "targets/a", "../etc", "", "Root", "targets.json", "x" * 300]


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    stack = start_stack(workdir, f"sqlite:///{workdir / 'server.db'}", f"sqlite:///{workdir / 'signer.db'}",
                        server_env=NO_AUTH)
    yield stack
    stack.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


@st.composite
def mutated(draw, valid: dict) -> bytes:
    """A valid upload with one to three mutations at random places, or raw junk."""
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "bytes", "truncate", "duplicate-key"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    text = json.dumps(valid, separators=(",", ":"))
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text) - 1))].encode()
    if kind == "duplicate-key":
        return text.replace('"version":', '"version":1,"version":', 1).encode()
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:  # everything deleted already
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent[path[-1]] = draw(json_values)
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "fuzz-boundary-7d1e"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f.json"\r\n\r\n'.encode()
        + data + b"\r\n" for name, data in parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_fuzzing_the_publish_endpoint(fuzz_stack, tmp_path):
    stack = fuzz_stack
    repo = new_collection(stack, COLLECTION)
    root_v1 = get(stack.base(COLLECTION) + "1.root.json")
    repo.bump("targets")
    repo.add_target("fuzz-target", b"fuzz")
    valid_targets = json.loads(repo.sign("targets"))
    repo.bump("root")
    valid_root = json.loads(repo.sign("root"))
    address = urlsplit(stack.url)
    path = urlsplit(stack.base(COLLECTION)).path
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    started = time.monotonic()
    seen = {"sent": 0, "accepted": 0, "statuses": {}}
    failures: list = []  # kept here, not raised: hypothesis would replay them past the time budget

    # Generation only: a failure is reported as found (shrinking would replay it past the time budget).
    @settings(max_examples=2500, deadline=None, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def upload(data) -> None:
        base = data.draw(st.sampled_from([valid_targets, valid_root]))
        parts = [(data.draw(st.sampled_from(ROLES)), data.draw(mutated(base)))
                 for _ in range(data.draw(st.integers(1, 2)))]
        # Past the budget, examples are still drawn (hypothesis requires consistent draws) but not sent.
        if time.monotonic() - started > TIME_BUDGET or failures:
            return
        body, content_type = _multipart(parts)
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        answer = response.read()
        seen["sent"] += 1
        seen["statuses"][response.status] = seen["statuses"].get(response.status, 0) + 1
        if response.status >= 500:
            failures.append((response.status, answer[:300], parts))
        if response.status == 200:
            seen["accepted"] += 1
            try:
                assert_whole(stack, COLLECTION, root_v1, tmp_path)  # what was accepted verifies
            except Exception as e:  # noqa: BLE001
                failures.append(("accepted upload does not verify", repr(e), parts))

    upload()
    connection.close()
    print(f"fuzzing: {seen}")
    assert failures == []
    assert seen["sent"] >= 500, seen  # about 1,000-2,000 on two cores
    # Nothing invalid was accepted: the collection is still whole and at a version a valid upload made.
    assert_whole(stack, COLLECTION, root_v1, tmp_path)
