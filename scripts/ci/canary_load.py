#!/usr/bin/env python3
"""Steady load for the container stage's canary (scripts/ci/containers.sh).

Keep-alive HTTP clients against nginx, each from a source address of its own:
nginx and the API limit requests per client address, and a canary step needs a
few hundred requests on its smaller colour to judge a p99, more than one
address may send. Per address: an API reader (workspace reads, no API limit),
a page reader (the login page) and a writer (artifact creations, under the
API's 30 writes a minute). A few "browsers" keep the GWCOLOR cookie HAProxy
gives them and record the colour of every answer (X-Ghostworks-Colour).

The browsers stop when STOP_FILE.browsers exists, the rest when STOP_FILE does;
then it writes OUT_DIR/summary.json, OUT_DIR/acked.ids
(the ids of the acknowledged writes) and OUT_DIR/browsers.json.

usage: canary_load.py HOST PORT TOKEN_FILE WORKSPACE OUT_DIR STOP_FILE RATE ADDRESS...
TOKEN_FILE holds the access token; RATE is the total read rate aimed at
(requests a second).
"""
import http.client
import json
import os
import sys
import threading
import time
from collections import Counter

host, port, token_file, ws, out_dir, stop_file, rate = sys.argv[1:8]
with open(token_file) as f:
    token = f.read().strip()
addresses = sys.argv[8:]
port, rate = int(port), float(rate)
lock = threading.Lock()
codes = Counter()
colours = Counter()
acked = []
errors = []
browsers = {}


def record(code, colour=None):
    with lock:
        codes[code] += 1
        if colour:
            colours[colour] += 1


def client(source, pause, request, browser=None):
    conn = None
    cookie = None
    n = 0
    while not os.path.exists(stop_file) and not (
            browser is not None and os.path.exists(stop_file + ".browsers")):
        n += 1
        started = time.monotonic()
        method, path, body = request(n)
        headers = {"authorization": f"Bearer {token}"}
        if body is not None:
            headers["content-type"] = "application/json"
        if cookie:
            headers["cookie"] = cookie
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            colour = resp.getheader("x-ghostworks-colour")
            record(str(resp.status), colour)
            if browser is not None:
                for c in resp.headers.get_all("set-cookie") or []:
                    if c.startswith("GWCOLOR="):
                        cookie = c.split(";", 1)[0]
                with lock:
                    browsers[browser].append(colour or "-")
            if method == "POST" and resp.status == 201:
                with lock:
                    acked.append(json.loads(data)["id"])
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # a failed request is what the stage counts
            record("000")
            with lock:
                errors.append(f"{source} {method} {path}: {e!r}")
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(max(0.0, pause - (time.monotonic() - started)))


# Of the read rate, two thirds API reads and a third pages, spread over the addresses.
per_address = rate / len(addresses)
threads = []
for i, a in enumerate(addresses):
    api_pause = 1.0 / (per_address * 2 / 3)
    page_pause = 1.0 / (per_address / 3)
    threads.append(threading.Thread(target=client, args=(
        a, api_pause, lambda n: ("GET", f"/api/v1/workspaces/{ws}", None))))
    threads.append(threading.Thread(target=client, args=(
        a, page_pause, lambda n: ("GET", "/login", None))))
    threads.append(threading.Thread(target=client, args=(
        a, 2.5, lambda n, a=a: ("POST", f"/api/v1/workspaces/{ws}/artifacts",
                                json.dumps({"name": f"canary-{a}-{n}", "tags": ["canary"]})))))
for b in range(4):
    browsers[b] = []
    threads.append(threading.Thread(target=client, args=(
        addresses[b % len(addresses)], 0.5, lambda n: ("GET", f"/api/v1/workspaces/{ws}", None), b)))
for t in threads:
    t.start()
for t in threads:
    t.join()

with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump({"codes": codes, "colours": colours, "errors": errors[:20],
               "requests": sum(codes.values())}, f)
with open(os.path.join(out_dir, "acked.ids"), "w") as f:
    f.write("".join(f"{i}\n" for i in acked))
with open(os.path.join(out_dir, "browsers.json"), "w") as f:
    json.dump(browsers, f)
