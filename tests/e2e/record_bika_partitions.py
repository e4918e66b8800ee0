#!/usr/bin/env python3
"""record_bika_partitions.py SITE_URL OUT_DIR -- record the legacy reads of the seeded
partitioned sample (tests/e2e/seed_bika.py's seed-partitioned) from a real BIKA LIMS 3.1 site,
in the format of data/fixtures/bika/ (NAME.json the body byte for byte, NAME.meta.json the
request, status and headers). stdlib only; basic auth admin:admin (--user u:p).

  legacy_read_partitioned_client   its client (portal_catalog)
  legacy_read_partitioned_ar       the AnalysisRequest (bika_catalog, its analyses inlined)
  legacy_read_partitioned_sample   its Sample (bika_catalog)
  legacy_read_partitions           the Sample's SamplePartitions (portal_catalog, by path)
  legacy_read_partition_setup      the containers and the preservation they name
                                   (bika_setup_catalog)
"""
import argparse
import base64
import json
import os
import sys
import time
import urllib.parse
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("site")
ap.add_argument("out")
ap.add_argument("--user", default="admin:admin")
args = ap.parse_args()
SITE = args.site.rstrip("/")
AUTH = "Basic " + base64.b64encode(args.user.encode()).decode()


def record(name, form):
    url = SITE + "/@@API/read"
    body = urllib.parse.urlencode(form, doseq=True).encode()
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Authorization", AUTH)
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    t0 = time.time()
    resp = urllib.request.urlopen(req, timeout=120)
    raw = resp.read()
    seconds = round(time.time() - t0, 3)
    out = json.loads(raw.decode("utf-8"))
    if out.get("success") is not True or not out.get("objects"):
        sys.exit("%s %s -> %s" % (name, form, raw[:300]))
    with open(os.path.join(args.out, name + ".json"), "wb") as f:
        f.write(raw)
    meta = {
        "method": "POST",
        "url": url,
        "request_body": form,
        "request_content_type": "application/x-www-form-urlencoded",
        "status": resp.status,
        "seconds": seconds,
        "response_headers": dict(resp.getheaders()),
    }
    with open(os.path.join(args.out, name + ".meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print("recorded %s (%d objects)" % (name, len(out["objects"])))
    return out["objects"]


ar = record("legacy_read_partitioned_ar", {
    "catalog_name": "bika_catalog", "portal_type": "AnalysisRequest",
    "getClientSampleID": "seed-partitioned"})[0]
record("legacy_read_partitioned_client", {
    "catalog_name": "portal_catalog", "portal_type": "Client", "UID": ar["Client_uid"]})
sample = record("legacy_read_partitioned_sample", {
    "catalog_name": "bika_catalog", "portal_type": "Sample", "UID": ar["Sample_uid"]})[0]
parts = record("legacy_read_partitions", {
    "catalog_name": "portal_catalog", "portal_type": "SamplePartition",
    "path": sample["path"]})
uids = sorted({p[k] for p in parts for k in ("Container_uid", "Preservation_uid") if p.get(k)})
record("legacy_read_partition_setup", {
    "catalog_name": "bika_setup_catalog", "UID": uids, "sort_on": "id"})
