#!/usr/bin/env python3
"""Where did an extract's wall time go? Reads a `senaite-sync -v extract` log (stderr) and prints,
per request class, the number of requests, their summed and mean server-side latency (the
client's `elapsed_ms`), and the phase's first/last timestamp.

    analyze_log.py extract-v1-j4.log [jobs]

With `jobs` it also prints busy = summed latency / (wall * jobs): near 1 means the workers were
waiting on the server the whole time (server-bound); well below 1 means time went elsewhere
(client work, or phases with less parallelism than -j).
"""
import collections
import datetime
import re
import sys

LINE = re.compile(r"^(\S+)\s+DEBUG GET done\. url=(\S+) elapsed_ms=(\d+)")
TS = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+)Z")


def ts(s):
    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".")
        s = head + "." + (frac + "000000")[:6]
    return datetime.datetime.fromisoformat(s)


def klass(url):
    if "/@@API/senaite/v1/search?" in url:
        if "catalog=uid_catalog" in url:
            return "v1 listing (uid_catalog)"
        if "complete=yes" in url:
            return "v1 complete page"
        return "v1 search other"
    if "/@@API/senaite/v1/" in url:
        rest = url.split("/@@API/senaite/v1/", 1)[1]
        if re.match(r"^[0-9a-f]{32}", rest):
            return "v1 single object"
        return "v1 other"
    if url.endswith("/@history"):
        return "restapi @history"
    if url.endswith("/@sharing"):
        return "restapi @sharing"
    if "/@users" in url or "/@groups" in url or "/@registry" in url or "/@" in url:
        return "restapi site (@users/@groups/...)"
    if "at_download" in url or "@@download" in url or "@@images" in url:
        return "file download"
    return "restapi object GET"


def main():
    path = sys.argv[1]
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else None
    stats = collections.OrderedDict()
    first = last = None
    for line in open(path, errors="replace"):
        m = TS.match(line)
        if m:
            t = ts(m.group(1))
            first = first or t
            last = t
        m = LINE.match(line)
        if not m:
            continue
        t, url, ms = ts(m.group(1)), m.group(2), int(m.group(3))
        k = klass(url)
        s = stats.setdefault(k, {"n": 0, "ms": 0, "first": t, "last": t})
        s["n"] += 1
        s["ms"] += ms
        s["last"] = t
    if first is None:
        print("no log lines")
        return
    wall = (last - first).total_seconds()
    total_ms = sum(s["ms"] for s in stats.values())
    print("log span %.1f s, %d requests, summed latency %.1f s" % (
        wall, sum(s["n"] for s in stats.values()), total_ms / 1000.0))
    if jobs:
        print("busy = summed latency / (span * %d jobs) = %.2f" % (jobs, total_ms / 1000.0 / max(wall, 1e-9) / jobs))
    print("%-36s %7s %9s %8s %10s %10s" % ("class", "n", "sum_s", "mean_ms", "from_s", "to_s"))
    for k, s in stats.items():
        print("%-36s %7d %9.1f %8.1f %10.1f %10.1f" % (
            k, s["n"], s["ms"] / 1000.0, s["ms"] / max(s["n"], 1),
            (s["first"] - first).total_seconds(), (s["last"] - first).total_seconds()))


if __name__ == "__main__":
    main()
