"""The request counting of bench/bench_peers.py, on log lines as both tools write them."""

from __future__ import annotations

from bench.bench_peers import Run, count_requests, table

SERVICES = {25357: "keystone", 28774: "nova", 29876: "octavia", 40511: "swift"}

# keystoneauth's lines in the collection's sdk_log_path file (plain logging).
ANSIBLE_LOG = """\
2026-12-03 04:05:39,548 DEBUG: keystoneauth.session REQ: curl -g -i -X GET \
http://127.0.0.1:25357/v3 -H "Accept: application/json"
2026-12-03 04:05:39,554 DEBUG: keystoneauth.identity.v3.base Making authentication \
request to http://127.0.0.1:25357/v3/auth/tokens
2026-12-03 04:05:40,101 DEBUG: keystoneauth.session REQ: curl -g -i -X GET \
"http://127.0.0.1:28774/v2.1/servers/detail?name=web-a-0" -H "Accept: application/json"
2026-12-03 04:05:40,301 DEBUG: keystoneauth.session REQ: curl -g -i --insecure -X POST \
http://127.0.0.1:29876/v2.0/lbaas/pools/p/members -H "Content-Type: application/json" -d '{}'
2026-12-03 04:05:40,302 DEBUG: keystoneauth.session RESP: [201] Content-Type: application/json
"""

# The same lines rendered by Phoenix's JSON log (--output json): quotes escaped.
PHOENIX_LOG = (
    '{"event": "REQ: curl -g -i -X GET \\"http://127.0.0.1:28774/v2.1/servers/detail?'
    'tags=phoenix-app%3Dweb\\" -H \\"Accept: application/json\\"", "level": "debug"}\n'
    '{"event": "REQ: curl -g -i -X PUT http://127.0.0.1:40511/v1/AUTH_x/phoenix/lease/1 '
    '-H \\"X-Auth-Token: {SHA256}abc\\"", "level": "debug"}\n'
    '{"event": "Making authentication request to http://127.0.0.1:25357/v3/auth/tokens", '
    '"level": "debug"}\n'
    '{"event": "REQ: curl -g -i -X GET http://127.0.0.1:9999/other", "level": "debug"}\n'
)


def test_counts_each_logged_request_and_each_token_request_by_service() -> None:
    assert count_requests(ANSIBLE_LOG, SERVICES) == {"keystone": 2, "nova": 1, "octavia": 1}


def test_reads_the_escaped_quotes_of_phoenix_json_log() -> None:
    assert count_requests(PHOENIX_LOG, SERVICES) == {
        "nova": 1, "swift": 1, "keystone": 1, "port 9999": 1}


def test_a_logged_token_post_is_counted_once() -> None:
    text = ("REQ: curl -g -i -X POST http://127.0.0.1:25357/v3/auth/tokens\n"
            "Making authentication request to http://127.0.0.1:25357/v3/auth/tokens\n")
    assert count_requests(text, SERVICES) == {"keystone": 1}


def test_table_compares_the_peer_with_phoenix_of_the_same_size_and_round() -> None:
    runs = [Run(6, "phoenix", 1, 10.0, count_requests(PHOENIX_LOG, SERVICES)),
            Run(6, "ansible", 1, 30.0, count_requests(ANSIBLE_LOG, SERVICES))]
    markdown = table(runs, markdown=True).splitlines()
    assert markdown[0].startswith("| nodes | run | tool | wall s | requests (non-Keystone)")
    assert markdown[2] == "| 6 | 1 | phoenix | 10.0 | 3 | 1 | 0 |  |"
    assert markdown[3] == ("| 6 | 1 | ansible | 30.0 | 2 | 2 | 1 | time 3.00x, requests "
                           "0.67x (with Keystone 1.00x) |")
