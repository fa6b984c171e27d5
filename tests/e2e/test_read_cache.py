"""Reads from worker memory on the production backend: fresh after every publish, from any worker."""

from __future__ import annotations

import json
import re
import urllib.request

from tests.e2e.tuf_http import get, new_collection, post


def _cache_hits(stack) -> float:
    with urllib.request.urlopen(stack.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(m) for m in re.findall(r'^tufnotary_read_cache_total\{result="hit"\} (\S+)$', text, re.M))


def test_every_read_after_a_publish_is_the_published_version(pg_stack, collection):
    repo = new_collection(pg_stack, collection)
    url = pg_stack.base(collection) + "timestamp.json"
    hits = _cache_hits(pg_stack)
    for n in range(2, 7):
        repo.add_target(f"file-{n}.txt", b"content %d" % n)
        repo.bump("targets")
        written = post(pg_stack, collection, {"targets": repo.sign("targets")})["versions"]
        # New connections are spread over the workers: each read may come from another one's memory.
        seen = {json.loads(get(url))["signed"]["version"] for _ in range(12)}
        assert seen == {written["timestamp"]}, f"after publish {n}: read {seen}, stored {written}"
    assert _cache_hits(pg_stack) > hits  # and most of those reads came from memory
