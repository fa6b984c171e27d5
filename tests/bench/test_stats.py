"""Tiny checks of the harness's pure parts (no load, no processes): wrk parsing, medians, ratios."""

from __future__ import annotations

from tests.bench.profile import summarize as summarize_profile
from tests.bench.report import Results, table
from tests.bench.stats import parse_wrk, ratio, summarize

WRK_SAMPLE = """Running 10s test @ http://127.0.0.1:4443/v2/a/b/_trust/tuf/timestamp.json
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    35.12ms   30.01ms 401.00ms   88.00%
    Req/Sec   476.50     80.10   650.00     70.00%
  Latency Distribution
     50%   34.90ms
     75%   40.00ms
     90%   60.00ms
     99%  160.50ms
  9480 requests in 10.01s, 6.10MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:    947.05
Transfer/sec:    624.00KB
"""


def test_parse_wrk_reads_throughput_percentiles_and_errors() -> None:
    r = parse_wrk(WRK_SAMPLE)
    assert (r.requests_per_s, r.p50_ms, r.p99_ms, r.requests) == (947.05, 34.9, 160.5, 9480)
    assert (r.non_2xx, r.socket_errors) == (7, 3)


def test_parse_wrk_units() -> None:
    text = WRK_SAMPLE.replace("34.90ms", "812.00us").replace("160.50ms", "1.20s")
    r = parse_wrk(text)
    assert abs(r.p50_ms - 0.812) < 1e-9 and abs(r.p99_ms - 1200.0) < 1e-9


def test_median_spread_and_ratio() -> None:
    ours, theirs = summarize([3.0, 1.0, 2.0, 10.0, 2.5]), summarize([1.0, 1.0, 1.0])
    assert ours is not None and (ours.median, ours.low, ours.high, ours.n) == (2.5, 1.0, 10.0, 5)
    assert ratio(ours, theirs) == 2.5
    assert summarize([]) is None and ratio(ours, None) is None


def test_table_has_one_row_per_metric() -> None:
    results = Results()
    results.add("ours", {"GET req/s": 3000.0})
    results.add("notary", {"GET req/s": 1000.0})
    results.add("ours", {"GET req/s": 2000.0, "signer sig/s": 10.0})
    lines = table(results).splitlines()
    assert len(lines) == 4 and "2.50×" in lines[2] and "| signer sig/s |" in lines[3]


def test_profile_summary_drops_idle_workers() -> None:
    collapsed = ("main (a.py:1);get (sql.py:5) 30\n"
                 "main (a.py:1);EpollSelector.select (selectors.py:9) 70\n"
                 "main (a.py:1);sign (remote_signer.py:7) 10\n")
    summary = summarize_profile(collapsed)
    assert summary["self"][0] == ("get (sql.py)", 75.0)
    assert all("select" not in f for f, _ in summary["self"])
