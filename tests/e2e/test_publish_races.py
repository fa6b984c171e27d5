"""Publishing through the real gunicorn server: concurrent publishers and oversized uploads."""

from __future__ import annotations

import http.client
import threading
import urllib.error
from urllib.parse import urlsplit

from tests.e2e.tuf_http import get, new_collection, post


def test_concurrent_publishers_one_wins_the_rest_conflict(stack, collection):
    repo = new_collection(stack, collection)
    repo.bump("targets")
    candidates = []
    for n in range(8):
        repo.md("targets").signed.targets.clear()
        repo.add_target(f"from-publisher-{n}", str(n).encode())
        candidates.append(repo.sign("targets"))
    results: list[object] = [None] * len(candidates)
    barrier = threading.Barrier(len(candidates))

    def publish(i: int) -> None:
        barrier.wait()
        try:
            results[i] = post(stack, collection, {"targets": candidates[i]})
        except urllib.error.HTTPError as e:
            results[i] = e.code

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(candidates))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in enumerate(results) if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert sorted(r for r in results if not isinstance(r, dict)) == [409] * (len(candidates) - 1)
    assert get(stack.base(collection) + "2.targets.json") == candidates[winners[0]]
    assert get(stack.base(collection) + "targets.json") == candidates[winners[0]]


def test_a_100_mb_upload_is_refused_without_being_read(stack, collection):
    repo = new_collection(stack, collection)
    before = get(stack.base(collection) + "targets.json")
    url = urlsplit(stack.base(collection))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("POST", url.path)
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(100 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"--x\r\n" + b" " * 65536)  # the server must answer before the rest arrives
    response = conn.getresponse()
    assert response.status == 413
    assert b"UPLOAD_TOO_LARGE" in response.read()
    conn.close()
    assert get(stack.base(collection) + "targets.json") == before
    assert get(stack.url + "/v2/") == b"{}\n" or get(stack.url + "/v2/").strip() == b"{}"
    del repo
