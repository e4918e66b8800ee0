#!/usr/bin/env python3
"""Protocol-level test of the senaite-sync receiver inside a real instance.

    python3 companion/tests/test_receiver.py --src-snapshot DIR \
        --url http://127.0.0.1:PORT/senaite [--bin PATH] [--state DIR]

The destination must be a fresh SENAITE site with the receiver installed.
It is populated by the real loader (`senaite-sync load`, run as a
subprocess; its ordering, batching, deferral and resume logic are not
repeated here), then every route is called directly with urllib:

- `sync/info`; `sync/lookup` of every snapshot object: the `applied_hash`
  the loader stored equals the `load_hash` computed here from the snapshot
  rows exactly as PROTOCOL.md defines it (Python and Rust agree);
- a few records re-applied: `unchanged`;
- `unknown_fields`: keys outside the schema holding a value are listed on
  apply and on re-apply (`unchanged`), empty ones are not; the real load's
  report lists none;
- failure isolation in one `sync/apply` batch: good -> created, bad parent
  -> failed, invalid field value -> partial with field_errors, exception
  after creation -> failed and rolled back, missing reference target ->
  deferred; the rest commits and nothing of a failed record remains;
- anonymous and a non-Manager (Analyst) user: 401 on every sync route, and
  nothing written;
- blobs: wrong offset 409 with `received`, sha256 mismatch 400 with the
  partial upload discarded, chunk over max_chunk_bytes 413; JSON body over
  max_request_bytes 413;
- a record with workflow states but no history (a BIKA 3.1 source): its
  state is kept as the one history entry;
- a partition (a sample record whose ParentAnalysisRequest names a loaded
  sample): the primary's getDescendantsUIDs lists it at once, and the
  primary keeps its modification date;
- `sync/principals` twice: the second answer is all `unchanged`;
- `sync/finalize` twice: the second changes nothing;
- a sample created through plain senaite.jsonapi afterwards gets an id no
  snapshot object has.

Credentials: SENAITE_USER / SENAITE_PASSWORD (default admin/admin; a
Manager). Needs pyarrow (to read the snapshot's Parquet tables).
Exit 0 with a one-line summary, 1 when a check failed (each listed).
"""
import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

DEFAULT_BIN = "/work/main/target/release/senaite-sync"
JSON_COLUMNS = ("fields", "sources", "extra", "properties")
ROW_TABLES = ("workflow_history", "workflow_states", "local_roles", "blobs")
SYNC_ROUTES = (("GET", "sync/info"), ("POST", "sync/lookup"),
               ("POST", "sync/apply"), ("GET", "sync/blob/" + "0" * 64),
               ("POST", "sync/blob/" + "0" * 64), ("POST", "sync/principals"),
               ("POST", "sync/finalize"), ("POST", "sync/remove"),
               ("POST", "sync/accept"))
# Types worth re-applying: AT and DX, adopted site structure, blobs, history.
REAPPLY_TYPES = ("BikaSetup", "Client", "Contact", "AnalysisRequest",
                 "Analysis", "Attachment", "SampleType", "SamplePoint",
                 "Department", "Batch")


# ------------------------------------------------------------------ records

def canonical(value):
    """PROTOCOL.md's canonical JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def load_hash(record):
    """sha256 hex of the canonical JSON of the record without load_hash."""
    rest = dict((k, v) for k, v in record.items() if k != "load_hash")
    return hashlib.sha256(canonical(rest).encode("utf-8")).hexdigest()


def parse_json_text(text):
    """A JSON-text column; NaN/Infinity become {"$nonfinite": ...} markers
    (the wire form of non-finite numbers); unparsable text stays text."""
    if text is None:
        return None
    try:
        return json.loads(text, parse_constant=lambda c: {"$nonfinite": c})
    except ValueError:
        return text


def site_path(url):
    """/senaite from http://host:port/senaite."""
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1].rstrip("/") if "/" in rest else "/"


def rewrite(path, src, dst):
    if path is None or src == dst:
        return path
    if path == src or path.startswith(src + "/"):
        return dst + path[len(src):]
    return path


class Snapshot(object):
    """The snapshot's tables, read with pyarrow; records built on demand."""

    def __init__(self, directory, dest_site_path):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise SystemExit("pyarrow is needed to read the snapshot (%s); "
                             "use a python3 that has it" % exc)
        self.dir = directory
        with open(os.path.join(directory, "manifest.json"),
                  encoding="utf-8") as handle:
            manifest = json.load(handle)
        self.src_site = site_path(manifest["source"]["site_url"])
        self.dst_site = dest_site_path

        def table(name):
            path = os.path.join(directory, "tables", name + ".parquet")
            if not os.path.exists(path):
                return []
            rows = pq.read_table(path).to_pylist()
            for row in rows:
                for col in JSON_COLUMNS:
                    if col in row:
                        row[col] = parse_json_text(row[col])
            return rows
        self.objects = table("objects")
        self.by_uid = dict((r["uid"], r) for r in self.objects)
        self.rows = {}
        for name in ROW_TABLES:
            per_uid = {}
            for row in table(name):
                per_uid.setdefault(row["uid"], []).append(row)
            self.rows[name] = per_uid
        self.users = table("users")
        self.groups = table("groups")

    def record(self, uid):
        """The apply Record of uid (PROTOCOL.md, POST sync/apply)."""
        rec = dict(self.by_uid[uid])
        for key in ("path", "parent_path"):
            rec[key] = rewrite(rec.get(key), self.src_site, self.dst_site)
        for name in ROW_TABLES:
            rows = [dict((k, v) for k, v in row.items() if k != "uid")
                    for row in self.rows[name].get(uid, [])]
            if name == "workflow_history":
                rows.sort(key=lambda r: (r["workflow"], r["seq"]))
            rec[name] = rows
        rec["load_hash"] = load_hash(rec)
        return rec

    def of_type(self, portal_type):
        return [r["uid"] for r in self.objects
                if r["portal_type"] == portal_type]

    def blob_path(self, sha):
        for path in (os.path.join(self.dir, "blobs", sha[:2], sha),
                     os.path.join(self.dir, "blobs", sha)):
            if os.path.exists(path):
                return path
        return None


# ------------------------------------------------------------------ http

class Client(object):
    """senaite.jsonapi v1 (and plone.restapi) over urllib."""

    def __init__(self, url, user=None, password=None):
        self.site = url.rstrip("/")
        self.api = self.site + "/@@API/senaite/v1/"
        self.auth = None
        if user is not None:
            token = base64.b64encode(("%s:%s" % (user, password))
                                     .encode("utf-8")).decode("ascii")
            self.auth = "Basic " + token

    def call(self, method, route, body=None, raw=None, headers=None,
             absolute=False):
        """(status, parsed JSON answer or {"message": text})."""
        data = raw if raw is not None else (
            json.dumps(body).encode("utf-8") if body is not None else None)
        url = route if absolute else self.api + route
        request = urllib.request.Request(url, data=data, method=method)
        if self.auth:
            request.add_header("Authorization", self.auth)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/octet-stream"
                               if raw is not None else "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=300) as resp:
                status, text = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read()
        try:
            answer = json.loads(text.decode("utf-8") or "{}")
        except ValueError:
            answer = {"message": text.decode("utf-8", "replace")[:500]}
        if not isinstance(answer, dict):
            answer = {"value": answer}
        return status, answer

    def ok(self, method, route, body=None, **kw):
        status, answer = self.call(method, route, body, **kw)
        if status != 200 or answer.get("success") is False:
            raise AssertionError("%s %s -> %s %s" % (
                method, route, status, canonical_short(answer)))
        return answer

    def lookup(self, uids=(), paths=()):
        return self.ok("POST", "sync/lookup",
                       {"uids": list(uids), "paths": list(paths)})

    def apply(self, records):
        return self.ok("POST", "sync/apply", {"records": records})["items"]

    def blob(self, sha, chunk, offset, size):
        return self.call("POST", "sync/blob/" + sha, raw=chunk, headers={
            "X-Sync-Offset": str(offset), "X-Sync-Size": str(size)})


def canonical_short(value, limit=600):
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------ checks

class Checks(object):
    def __init__(self):
        self.passed = 0
        self.failures = []

    def check(self, ok, message, detail=""):
        if ok:
            self.passed += 1
            print("ok   " + message)
        else:
            text = message + (": " + detail if detail else "")
            self.failures.append(text)
            print("FAIL " + text)
        return ok

    def section(self, name, func, *args):
        """Run one group of checks; an exception fails it, not the run."""
        print("--- " + name)
        try:
            func(self, *args)
        except Exception as exc:  # noqa: B902 - reported as a failure
            traceback.print_exc()
            self.check(False, "%s raised" % name,
                       "%s: %s" % (type(exc).__name__, exc))


def run_load(checks, binary, snapshot_dir, url, state, env):
    """senaite-sync load SNAPSHOT --url URL --state STATE: exit 0."""
    cmd = [binary, "--progress", "never", "-q", "load", snapshot_dir,
           "--url", url, "--state", state, "--json"]
    started = time.time()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    seconds = time.time() - started
    try:
        report = json.loads(proc.stdout.decode("utf-8"))
    except ValueError:
        report = {}
    ok = checks.check(proc.returncode == 0,
                      "senaite-sync load exits 0 (%.1fs, totals %s)" % (
                          seconds, canonical_short(report.get("totals"))),
                      "exit %s\n%s\n%s" % (
                          proc.returncode, proc.stdout.decode()[-3000:],
                          proc.stderr.decode()[-3000:]))
    checks.check(report.get("unknown_fields") == {},
                 "the load's report lists no value without a field here",
                 canonical_short(report.get("unknown_fields")))
    return ok


def check_unknown_fields(checks, admin, ctx):
    """Keys outside the schema with a value: listed, on apply and re-apply;
    empty values, schema fields, catalog columns and API keys: not."""
    snap = ctx["snap"]
    rec = clone(snap.record(snap.of_type("Contact")[0]), "unknown",
                snap.dst_site)
    rec["fields"]["NoSuchField"] = "kept nowhere"
    rec["fields"]["sample_point"] = [{"uid": "a" * 32}]
    rec["fields"]["EmptyNoSuchField"] = ""
    rec["fields"]["NullNoSuchField"] = None
    rec["load_hash"] = load_hash(rec)
    want = ["NoSuchField", "sample_point"]
    for attempt, status in (("apply", "created"), ("re-apply", "unchanged")):
        items = admin.apply([rec])
        got = (items[0].get("status"), items[0].get("unknown_fields"))
        checks.check(got == (status, want),
                     "%s: %s, unknown_fields %s" % (attempt, status, want),
                     canonical_short(items))


def check_info(checks, admin, ctx):
    info = admin.ok("GET", "sync/info")
    ctx["info"] = info
    checks.check(info.get("protocol") == 2 and
                 info.get("site_path") == ctx["snap"].dst_site,
                 "sync/info: protocol 2, site %s, limits %s/%s/%s" % (
                     info.get("site_path"), info.get("max_request_bytes"),
                     info.get("max_batch"), info.get("max_chunk_bytes")),
                 canonical_short(info))


def check_hashes(checks, admin, ctx):
    """applied_hash (stored by the loader's apply) == our load_hash."""
    snap = ctx["snap"]
    uids = [r["uid"] for r in snap.objects]
    batch = ctx["info"].get("max_batch") or 200
    found = []
    for start in range(0, len(uids), batch):
        found.extend(admin.lookup(uids[start:start + batch])["uids"])
    missing, mismatched, changed = [], [], []
    for item in found:
        rec = snap.record(item["uid"])
        if not item.get("exists"):
            missing.append(rec["path"])
            continue
        if item.get("applied_hash") != rec["load_hash"]:
            mismatched.append("%s %s: applied %s, computed %s" % (
                rec["portal_type"], rec["path"], item.get("applied_hash"),
                rec["load_hash"]))
        if item.get("changed_since_apply") or item.get("path") != rec["path"]:
            changed.append(rec["path"])
    checks.check(not missing, "lookup: all %d snapshot objects exist"
                 % len(uids), ", ".join(missing[:20]))
    checks.check(not mismatched,
                 "applied_hash == load_hash computed here for %d/%d objects"
                 % (len(found) - len(missing) - len(mismatched), len(found)),
                 "\n  " + "\n  ".join(mismatched[:20]))
    checks.check(not changed, "lookup: paths as in the snapshot, "
                 "changed_since_apply false", ", ".join(changed[:20]))


def check_reapply(checks, admin, ctx):
    """A few records of different kinds sent again: all unchanged."""
    snap = ctx["snap"]
    uids = []
    for portal_type in REAPPLY_TYPES:
        uids.extend(snap.of_type(portal_type)[:1])
    uids.extend(u for u in snap.rows["blobs"] if u not in uids)
    records = [snap.record(u) for u in uids]
    before = dict((i["uid"], i.get("modified")) for i in
                  admin.lookup([r["uid"] for r in records])["uids"])
    items = admin.apply(records)
    statuses = dict((i["uid"], i["status"]) for i in items)
    bad = ["%s %s" % (r["path"], statuses.get(r["uid"])) for r in records
           if statuses.get(r["uid"]) != "unchanged"]
    types = sorted(set(r["portal_type"] for r in records))
    checks.check(len(items) == len(records) and not bad,
                 "%d records re-applied (%s): all unchanged"
                 % (len(records), ", ".join(types)), ", ".join(bad))
    after = admin.lookup([r["uid"] for r in records])["uids"]
    moved = [i["uid"] for i, r in zip(after, records)
             if i.get("modified") != before.get(r["uid"])]
    checks.check(not moved, "unchanged records keep their modified date",
                 ", ".join(moved))


def clone(template, suffix, dest_site):
    rec = json.loads(json.dumps(template))
    rec["uid"] = uuid.uuid4().hex
    rec["id"] = "hc-test-%s-%s" % (suffix, rec["uid"][:6])
    rec["path"] = rec["parent_path"] + "/" + rec["id"]
    rec["title"] = "HC %s" % suffix
    rec["fields"]["uid"] = rec["uid"]
    rec["fields"]["id"] = rec["id"]
    return rec


def check_isolation(checks, admin, ctx):
    """One batch: each record's outcome is its own; failures leave nothing."""
    snap = ctx["snap"]
    contacts = snap.of_type("Contact")
    template = snap.record(contacts[0])
    dst = snap.dst_site
    good = clone(template, "good", dst)
    badparent = clone(template, "parent", dst)
    badparent["parent_uid"] = "f" * 32
    badparent["parent_path"] = dst + "/clients/no-such-client"
    badparent["path"] = badparent["parent_path"] + "/" + badparent["id"]
    badfield = clone(template, "field", dst)
    badfield["fields"]["Firstname"] = {"not": "a string"}
    late = clone(template, "late", dst)
    checks.check(bool(late["workflow_history"]),
                 "template contact has workflow history")
    late["workflow_history"][-1]["time"] = "not-a-time"
    deferred = clone(template, "deferred", dst)
    target = clone(template, "target", dst)  # sent after the batch
    deferred["fields"]["CCContact"] = [{"uid": target["uid"]}]
    batch = [good, badparent, badfield, late, deferred]
    for rec in batch:
        rec["load_hash"] = load_hash(rec)
    items = admin.apply(batch)
    got = [i.get("status") for i in items]
    checks.check(got == ["created", "failed", "partial", "failed",
                         "deferred"],
                 "isolation batch: created, failed, partial, failed, "
                 "deferred", "got %s" % got)
    if len(items) != 5:
        return
    checks.check(bool(items[1].get("error")) and
                 "no-such-client" in items[1]["error"],
                 "bad parent: failed with its reason",
                 canonical_short(items[1]))
    checks.check(list(items[2].get("field_errors") or {}) == ["Firstname"],
                 "invalid field value: partial, only Firstname rejected",
                 canonical_short(items[2]))
    checks.check(bool(items[3].get("error")),
                 "exception after creation: failed with its reason",
                 canonical_short(items[3]))
    checks.check(items[4].get("deferred_fields") == ["CCContact"],
                 "missing reference target: deferred_fields [CCContact]",
                 canonical_short(items[4]))
    look = admin.lookup([r["uid"] for r in batch],
                        [badparent["path"], late["path"]])
    exists = [i.get("exists") for i in look["uids"]]
    checks.check(exists == [True, False, True, False, True],
                 "lookup: good/partial/deferred exist, failed ones do not",
                 "got %s" % exists)
    paths = [i.get("exists") for i in look["paths"]]
    checks.check(paths == [False, False],
                 "nothing at the failed records' paths", "got %s" % paths)
    hashes = [i.get("applied_hash") for i in look["uids"]]
    checks.check(hashes[0] == good["load_hash"] and hashes[2] is None and
                 hashes[4] is None,
                 "applied_hash stored for the complete record only",
                 "got %s" % hashes)
    status, found = admin.call("GET", "search?portal_type=Contact&UID=%s"
                               % late["uid"])
    checks.check(status == 200 and found.get("count") == 0,
                 "rolled back record left no catalog entry",
                 "%s %s" % (status, canonical_short(found)))
    status, found = admin.call("GET", "search?portal_type=Contact&UID=%s"
                               % good["uid"])
    checks.check(status == 200 and found.get("count") == 1,
                 "committed record is catalogued",
                 "%s %s" % (status, canonical_short(found)))
    again = admin.apply([good])
    checks.check(again[0].get("status") == "unchanged",
                 "the good record sent again: unchanged",
                 canonical_short(again))
    target["load_hash"] = load_hash(target)
    later = admin.apply([target, deferred])
    got = [(i.get("status"), i.get("deferred_fields")) for i in later]
    checks.check(got == [("created", []), ("updated", [])],
                 "deferred record resent once its target exists: updated",
                 canonical_short(later))
    look = admin.lookup([deferred["uid"]])["uids"][0]
    checks.check(look.get("applied_hash") == deferred["load_hash"],
                 "... and now its applied_hash is stored",
                 canonical_short(look))


def check_state_without_history(checks, admin, ctx):
    """A source without review history (BIKA LIMS 3.1): the state is kept."""
    snap = ctx["snap"]
    template = snap.record(snap.of_type("Contact")[0])
    rec = clone(template, "nohistory", snap.dst_site)
    wfs = [r.get("workflow") for r in rec.get("workflow_states") or []]
    checks.check(bool(wfs), "template contact has a workflow state",
                 canonical_short(rec.get("workflow_states")))
    if not wfs:
        return
    rec["workflow_history"] = []
    rec["workflow_states"] = [{"workflow": wfs[0], "review_state": "inactive",
                               "status": None}]
    rec["load_hash"] = load_hash(rec)
    items = admin.apply([rec])
    checks.check([i.get("status") for i in items] == ["created"],
                 "record with states and no history: created",
                 canonical_short(items))
    obj, actions = history_actions(admin, rec["uid"])
    checks.check(obj.get("review_state") == "inactive",
                 "its state is the workflow_states one (inactive)",
                 canonical_short(obj.get("review_state")))
    checks.check(actions == [None],
                 "one history entry records it", "got %s" % actions)


def check_partition(checks, admin, ctx):
    """A sample with ParentAnalysisRequest: its primary's catalog entry names
    it (as senaite.core's create_partition reindexes the primary)."""
    snap = ctx["snap"]
    samples = snap.of_type("AnalysisRequest")
    if not checks.check(bool(samples), "snapshot has a sample"):
        return
    primary = snap.record(samples[0])
    rec = clone(primary, "partition", snap.dst_site)
    rec["fields"]["ParentAnalysisRequest"] = {"uid": primary["uid"]}
    rec["load_hash"] = load_hash(rec)
    before = admin.lookup([primary["uid"]])["uids"][0].get("modified")
    items = admin.apply([rec])
    checks.check([i.get("status") for i in items] == ["created"],
                 "partition record: created", canonical_short(items))
    status, got = admin.call("GET", primary["uid"])
    checks.check(status == 200 and rec["uid"] in
                 (got.get("getDescendantsUIDs") or []),
                 "the primary's getDescendantsUIDs lists the partition",
                 "%s %s" % (status, canonical_short(
                     got.get("getDescendantsUIDs"))))
    status, part = admin.call("GET", rec["uid"])
    checks.check(part.get("getRawParentAnalysisRequest") == primary["uid"],
                 "the partition names its primary",
                 canonical_short(part.get("getRawParentAnalysisRequest")))
    after = admin.lookup([primary["uid"]])["uids"][0].get("modified")
    checks.check(after == before, "the primary keeps its modification date",
                 "%s -> %s" % (before, after))


def history_actions(admin, uid):
    status, obj = admin.call("GET", "%s?complete=yes&workflow=yes" % uid)
    actions = []
    for wf in obj.get("workflow_info") or []:
        actions.extend(h.get("action") for h in wf.get("review_history") or [])
    return obj, actions


def check_delta_routes(checks, admin, ctx):
    """Protocol 2: apply moves in place; sync/remove deactivates (a real
    transition), reports what cannot be deactivated, deletes; sync/accept."""
    snap = ctx["snap"]
    active = [u for u in snap.of_type("Contact")
              if snap.record(u).get("review_state") == "active"]
    template = snap.record(active[0])
    rec = clone(template, "mover", snap.dst_site)
    rec["load_hash"] = load_hash(rec)
    first = admin.apply([rec])[0]
    old_path = rec["path"]
    moved = json.loads(json.dumps(rec))
    moved["id"] = rec["id"] + "-moved"
    moved["fields"]["id"] = moved["id"]
    moved["path"] = moved["parent_path"] + "/" + moved["id"]
    moved["load_hash"] = load_hash(moved)
    _, before = history_actions(admin, rec["uid"])
    item = admin.apply([moved])[0]
    look = admin.lookup([rec["uid"]], [old_path, moved["path"]])
    u = look["uids"][0]
    checks.check(first["status"] == "created" and item["status"] == "updated"
                 and item.get("moved_from") == old_path
                 and u.get("path") == moved["path"]
                 and u.get("applied_hash") == moved["load_hash"]
                 and not u.get("changed_since_apply"),
                 "apply of the same uid at a new path moves it in place",
                 canonical_short([item, u]))
    checks.check([p["exists"] for p in look["paths"]] == [False, True] and
                 look["paths"][1].get("uid") == rec["uid"],
                 "nothing left at the old path; the new path holds the uid",
                 canonical_short(look["paths"]))
    obj, after = history_actions(admin, rec["uid"])
    checks.check(after == before and obj.get("path") == moved["path"],
                 "the move keeps the review history (%d entries)" % len(after),
                 canonical_short([before, after]))
    out = admin.ok("POST", "sync/remove", {"items": [
        {"uid": rec["uid"], "policy": "deactivate"}]})["items"][0]
    obj, actions = history_actions(admin, rec["uid"])
    u = admin.lookup([rec["uid"]])["uids"][0]
    checks.check(out["status"] == "deactivated" and
                 obj.get("review_state") == "inactive" and
                 actions[-1:] == ["deactivate"] and
                 not u.get("changed_since_apply"),
                 "remove/deactivate: a deactivate transition in the history, "
                 "not a destination edit", canonical_short([out, actions, u]))
    again = admin.ok("POST", "sync/remove", {"items": [
        {"uid": rec["uid"], "policy": "deactivate"}]})["items"][0]
    checks.check(again["status"] == "already_inactive",
                 "remove/deactivate twice: already_inactive",
                 canonical_short(again))
    sample = snap.of_type("AnalysisRequest")[0]
    before = admin.lookup([sample])["uids"][0]
    out = admin.ok("POST", "sync/remove", {"items": [
        {"uid": sample, "policy": "deactivate"}]})["items"][0]
    after = admin.lookup([sample])["uids"][0]
    checks.check(out["status"] == "not_deactivatable" and
                 "deactivate" in (out.get("error") or "") and
                 after.get("modified") == before.get("modified") and
                 after.get("review_state") == before.get("review_state"),
                 "remove/deactivate of a sample: not_deactivatable, untouched",
                 canonical_short([out, before, after]))
    marker = "f" * 64
    out = admin.ok("POST", "sync/accept", {"items": [
        {"uid": sample, "load_hash": marker}]})["items"][0]
    u = admin.lookup([sample])["uids"][0]
    checks.check(out["status"] == "accepted" and u.get("accepted") is True
                 and u.get("applied_hash") == marker
                 and not u.get("changed_since_apply"),
                 "accept: the destination's version stands for the record",
                 canonical_short([out, u]))
    admin.apply([snap.record(sample)])
    u = admin.lookup([sample])["uids"][0]
    checks.check(u.get("applied_hash") == snap.record(sample)["load_hash"]
                 and not u.get("accepted"),
                 "a later apply replaces the acceptance", canonical_short(u))
    out = admin.ok("POST", "sync/remove", {"items": [
        {"uid": rec["uid"], "policy": "delete"},
        {"uid": rec["uid"], "policy": "delete"},
        {"uid": uuid.uuid4().hex, "policy": "deactivate"},
        {"uid": rec["uid"], "policy": "explode"}]})["items"]
    look = admin.lookup([rec["uid"]], [moved["path"]])
    checks.check([o["status"] for o in out] ==
                 ["deleted", "absent", "absent", "failed"] and
                 not look["uids"][0]["exists"] and
                 not look["paths"][0]["exists"],
                 "remove/delete: gone; again and unknown uids: absent; "
                 "an unknown policy: failed",
                 canonical_short([out, look]))


def create_analyst(admin, ctx):
    """A Plone user with only the Analyst role, through plone.restapi."""
    username = "hc_analyst_" + uuid.uuid4().hex[:6]
    password = "Pw-" + uuid.uuid4().hex
    status, answer = admin.call("POST", admin.site + "/@users", {
        "username": username, "password": password,
        "email": username + "@lab.example", "fullname": "HC Analyst",
        "roles": ["Analyst"]}, absolute=True)
    if status not in (200, 201):
        raise AssertionError("POST @users -> %s %s" % (status, answer))
    return Client(ctx["url"], username, password), username


def check_auth(checks, admin, ctx):
    """Anonymous and an Analyst: 401 on every route, nothing written."""
    analyst, username = create_analyst(admin, ctx)
    status, me = analyst.call("GET", "users/current")
    items = me.get("items") or [{}]
    checks.check(status == 200 and items[0].get("username") == username and
                 "Analyst" in (items[0].get("roles") or []),
                 "the Analyst user authenticates (users/current)",
                 "%s %s" % (status, canonical_short(me)))
    anonymous = Client(ctx["url"])
    snap = ctx["snap"]
    probe = clone(snap.record(snap.of_type("Contact")[0]), "authz",
                  snap.dst_site)
    probe["load_hash"] = load_hash(probe)
    chunk = b"unauthorized chunk"
    sha = hashlib.sha256(chunk).hexdigest()
    newuser = "hc_authz_" + uuid.uuid4().hex[:6]
    victim = ctx["snap"].of_type("Contact")[0]
    victim_before = admin.lookup([victim])["uids"][0]
    bodies = {
        "sync/lookup": {"uids": [probe["uid"]], "paths": []},
        "sync/apply": {"records": [probe]},
        "sync/principals": {"users": [{
            "username": newuser, "fullname": "", "email": "", "roles": [],
            "groups": [], "properties": {}}], "groups": []},
        "sync/finalize": {},
        "sync/remove": {"items": [{"uid": victim, "policy": "delete"}]},
        "sync/accept": {"items": [{"uid": victim, "load_hash": "0" * 64}]},
    }
    for who, client in (("anonymous", anonymous), ("Analyst", analyst)):
        wrong = []
        for method, route in SYNC_ROUTES:
            if route.startswith("sync/blob/"):
                route = "sync/blob/" + sha
            if route.startswith("sync/blob/") and method == "POST":
                status, answer = client.blob(sha, chunk, 0, len(chunk))
            else:
                status, answer = client.call(method, route,
                                             bodies.get(route))
            if status != 401:
                wrong.append("%s %s -> %s %s" % (method, route, status,
                                                 canonical_short(answer, 200)))
        checks.check(not wrong, "%s: 401 on all %d sync routes"
                     % (who, len(SYNC_ROUTES)), "; ".join(wrong))
    look = admin.lookup([probe["uid"]], [probe["path"]])
    checks.check(not look["uids"][0]["exists"] and
                 not look["paths"][0]["exists"],
                 "refused apply wrote nothing", canonical_short(look))
    victim_after = admin.lookup([victim])["uids"][0]
    checks.check(victim_after == victim_before,
                 "refused remove and accept changed nothing",
                 canonical_short([victim_before, victim_after]))
    state = admin.ok("GET", "sync/blob/" + sha)
    checks.check(state.get("received") == 0 and not state.get("complete"),
                 "refused blob chunk wrote nothing", canonical_short(state))
    status, _ = admin.call("GET", admin.site + "/@users/" + newuser,
                           absolute=True)
    checks.check(status == 404, "refused principals created no user",
                 "GET @users/%s -> %s" % (newuser, status))


def check_blobs(checks, admin, ctx):
    info = ctx["info"]
    data = os.urandom(200 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    state = admin.ok("GET", "sync/blob/" + sha)
    checks.check(state == dict(state, sha256=sha, received=0,
                               complete=False),
                 "unknown blob: received 0", canonical_short(state))
    status, answer = admin.blob(sha, data[:half], 0, len(data))
    checks.check(status == 200 and answer.get("received") == half and
                 answer.get("complete") is False,
                 "first chunk accepted", "%s %s" % (status, answer))
    status, answer = admin.blob(sha, data[half:], half + 1, len(data))
    checks.check(status == 409 and "received" in answer.get("message", "")
                 and str(half) in answer.get("message", ""),
                 "wrong offset: 409 naming received=%d" % half,
                 "%s %s" % (status, answer))
    corrupt = data[half:-1] + bytes([data[-1] ^ 0xFF])
    status, answer = admin.blob(sha, corrupt, half, len(data))
    checks.check(status == 400 and "sha256" in answer.get("message", ""),
                 "sha256 mismatch: 400", "%s %s" % (status, answer))
    state = admin.ok("GET", "sync/blob/" + sha)
    checks.check(state.get("received") == 0 and not state.get("complete"),
                 "mismatching upload discarded (received 0)",
                 canonical_short(state))
    status, answer = admin.blob(sha, data[:half], 0, len(data))
    status2, answer2 = admin.blob(sha, data[half:], half, len(data))
    checks.check(status == 200 and status2 == 200 and
                 answer2.get("complete") is True and
                 answer2.get("received") == len(data),
                 "upload from offset 0 again completes",
                 "%s %s / %s %s" % (status, answer, status2, answer2))
    state = admin.ok("GET", "sync/blob/" + sha)
    checks.check(state.get("complete") is True,
                 "complete blob reported complete", canonical_short(state))
    # The same chunk sent three times at once (a retry racing the original):
    # appended once, the others answer 409.
    data = os.urandom(4 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(
        admin.blob(sha, data[:len(data) // 2], 0, len(data))[0]))
        for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = admin.ok("GET", "sync/blob/" + sha)
    checks.check(sorted(answers) == [200, 409, 409] and
                 state.get("received") == len(data) // 2,
                 "same chunk sent 3 times at once: appended once",
                 "%s %s" % (sorted(answers), canonical_short(state)))
    limit = info.get("max_chunk_bytes") or 8 * 1024 * 1024
    big = os.urandom(1024) * ((limit + 1024) // 1024 + 1)
    big = big[:limit + 1]
    big_sha = hashlib.sha256(big).hexdigest()
    status, answer = admin.blob(big_sha, big, 0, len(big))
    checks.check(status == 413, "chunk of max_chunk_bytes+1 (%d): 413"
                 % len(big), "%s %s" % (status, canonical_short(answer)))
    state = admin.ok("GET", "sync/blob/" + big_sha)
    checks.check(state.get("received") == 0,
                 "refused chunk wrote nothing", canonical_short(state))
    status, answer = admin.call("GET", "sync/blob/not-a-sha")
    checks.check(status == 400, "invalid sha256 in the route: 400",
                 "%s %s" % (status, canonical_short(answer)))


def check_request_limit(checks, admin, ctx):
    limit = ctx["info"].get("max_request_bytes") or 32 * 1024 * 1024
    snap = ctx["snap"]
    probe = clone(snap.record(snap.of_type("Contact")[0]), "huge",
                  snap.dst_site)
    probe["load_hash"] = load_hash(probe)
    head = json.dumps({"records": [probe]})[:-1]
    pad = limit + 1 - len(head) - len(',"pad":""}')
    body = (head + ',"pad":"' + "x" * pad + '"}').encode("utf-8")
    status, answer = admin.call("POST", "sync/apply", raw=body, headers={
        "Content-Type": "application/json"})
    checks.check(status == 413, "JSON body of max_request_bytes+1 (%d): 413"
                 % len(body), "%s %s" % (status, canonical_short(answer)))
    look = admin.lookup([probe["uid"]])
    checks.check(not look["uids"][0]["exists"], "refused body wrote nothing",
                 canonical_short(look))
    batch = ctx["info"].get("max_batch") or 200
    status, answer = admin.call("POST", "sync/lookup", {
        "uids": [uuid.uuid4().hex for _ in range(batch + 1)], "paths": []})
    checks.check(status == 413, "lookup of max_batch+1 uids: 413",
                 "%s %s" % (status, canonical_short(answer)))


def principal_rows(snap):
    return ([dict(r) for r in snap.users], [dict(r) for r in snap.groups])


def check_principals(checks, admin, ctx):
    users, groups = principal_rows(ctx["snap"])
    newuser = "hc_new_" + uuid.uuid4().hex[:6]
    users.append({"username": newuser, "fullname": "HC New User",
                  "email": "new@lab.example", "roles": ["Analyst"],
                  "groups": ["Analysts"], "properties": {}})
    body = {"users": users, "groups": groups}
    first = admin.ok("POST", "sync/principals", body)["items"]
    failed = [i for i in first if i.get("status") == "failed"]
    checks.check(len(first) == len(users) + len(groups) and not failed,
                 "principals (%d users, %d groups): none failed"
                 % (len(users), len(groups)), canonical_short(failed))
    new = [i for i in first if i.get("id") == newuser]
    checks.check(bool(new) and new[0]["status"] == "created" and
                 new[0]["needs_password_reset"] is True,
                 "new user created with needs_password_reset",
                 canonical_short(new))
    second = admin.ok("POST", "sync/principals", body)["items"]
    notu = ["%s %s %s" % (i.get("kind"), i.get("id"), i.get("status"))
            for i in second if i.get("status") != "unchanged"]
    checks.check(len(second) == len(first) and not notu,
                 "principals sent twice: all %d unchanged" % len(second),
                 ", ".join(notu))


def check_finalize(checks, admin, ctx):
    first = admin.ok("POST", "sync/finalize", {})["counters"]
    second = admin.ok("POST", "sync/finalize", {})["counters"]
    moved = [c for c in second if c.get("old") != c.get("new")]
    checks.check(bool(first) and not moved,
                 "finalize twice: second changes nothing (%d counters)"
                 % len(second), canonical_short(moved))
    new_first = dict((c["key"], c["new"]) for c in first)
    new_second = dict((c["key"], c["new"]) for c in second)
    checks.check(new_first == new_second,
                 "finalize twice: same counters",
                 "%s != %s" % (new_first, new_second))


def check_new_sample(checks, admin, ctx):
    snap = ctx["snap"]
    sample = next((snap.by_uid[u] for u in snap.of_type("AnalysisRequest")
                   if (snap.by_uid[u]["fields"] or {}).get("Contact")), None)
    services = [u for u in snap.of_type("AnalysisService")
                if snap.by_uid[u]["review_state"] == "active"]
    if not checks.check(sample is not None and bool(services),
                        "snapshot has a sample and an active service"):
        return
    fields = sample["fields"]
    body = {"portal_type": "AnalysisRequest",
            "parent_path": rewrite(sample["parent_path"], snap.src_site,
                                   snap.dst_site),
            "Contact": fields["Contact"]["uid"],
            "SampleType": fields["SampleType"]["uid"],
            "DateSampled": "2025-05-06 10:00", "Analyses": services[:1]}
    status, answer = admin.call("POST", "create", body)
    items = answer.get("items") or [{}]
    new_id = items[0].get("id")
    ids = set(r["id"] for r in snap.objects)
    checks.check(status == 200 and bool(new_id) and new_id not in ids,
                 "sample created through senaite.jsonapi after finalize: "
                 "fresh id %s" % new_id,
                 "%s %s" % (status, canonical_short(answer)))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src-snapshot", required=True,
                        help="snapshot directory (senaite-sync extract)")
    parser.add_argument("--url", required=True,
                        help="site URL of a FRESH destination with the "
                        "receiver, e.g. http://127.0.0.1:8094/senaite")
    parser.add_argument("--bin", default=os.environ.get(
        "SENAITE_SYNC_BIN") or DEFAULT_BIN,
        help="senaite-sync binary (default %(default)s)")
    parser.add_argument("--state", default=None,
                        help="load state directory (default: a temporary "
                        "one, removed afterwards)")
    args = parser.parse_args()
    started = time.time()
    user = os.environ.get("SENAITE_USER") or "admin"
    password = os.environ.get("SENAITE_PASSWORD") or "admin"
    env = dict(os.environ, SENAITE_USER=user, SENAITE_PASSWORD=password)
    admin = Client(args.url, user, password)
    checks = Checks()
    if not os.access(args.bin, os.X_OK):
        print("FAIL senaite-sync binary not executable: %s (--bin)"
              % args.bin)
        return 1
    state = args.state or tempfile.mkdtemp(prefix="hc-receiver-state-")
    try:
        print("--- load")
        loaded = run_load(checks, args.bin, args.src_snapshot, args.url,
                          state, env)
    finally:
        if args.state is None:
            shutil.rmtree(state, ignore_errors=True)
    if loaded:
        ctx = {"url": args.url}
        status, info = admin.call("GET", "sync/info")
        ctx["snap"] = Snapshot(args.src_snapshot,
                               info.get("site_path") or site_path(args.url))
        for name, func in (
                ("info", check_info), ("applied_hash", check_hashes),
                ("re-apply", check_reapply),
                ("isolation", check_isolation),
                ("unknown fields", check_unknown_fields),
                ("state without history", check_state_without_history),
                ("partition", check_partition),
                ("delta routes", check_delta_routes), ("auth", check_auth),
                ("blobs", check_blobs),
                ("request limit", check_request_limit),
                ("principals", check_principals),
                ("finalize", check_finalize),
                ("new sample", check_new_sample)):
            if name != "info" and "info" not in ctx:
                checks.check(False, "%s skipped: sync/info failed" % name)
                continue
            checks.section(name, func, admin, ctx)
    seconds = time.time() - started
    if checks.failures:
        print("\n%d of %d checks FAILED (%.1fs):" % (
            len(checks.failures), len(checks.failures) + checks.passed,
            seconds))
        for failure in checks.failures:
            print("  - " + failure.split("\n")[0])
        return 1
    print("receiver protocol test: all %d checks passed in %.1fs"
          % (checks.passed, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
