#!/usr/bin/env python3
"""Add to a site seeded by ../shared/senaite/seed.sh what the end-to-end tests need and seed.sh
does not create. Standard library only.

    python3 tests/e2e/seed_extra.py http://127.0.0.1:8081/senaite [--user admin --password admin]

Creates, through senaite.jsonapi (get-or-create, so a re-run does not duplicate anything):
  - an AttachmentType "E2E Evidence" (Dexterity, setup/attachmenttypes);
  - three Attachments in the sample's client, each with an AttachmentFile, linked to samples:
      * 3 MiB of (seeded) random bytes,            application/octet-stream
      * a small PDF-like file,                      application/pdf
      * a small text file with a non-ASCII name,    text/plain  ("Prüfbericht-µg-Ø.txt")
  - a client Contact "Dora Dormant" that is deactivated;
  - a client Contact with non-ASCII names ("Zoë Ångström");
  - a Batch in a client with a non-ASCII title and a description with leading/trailing spaces;
  - a local role: user analyst1 gets Verifier on that client (plone.restapi @sharing).

Every object it creates carries a marker "senaite-sync-e2e:<key>" in a text field (an
Attachment's AttachmentKeys, a Contact's JobTitle, the Batch's ClientBatchID) so that a re-run
finds it again. Prints one line per object: "created ...", "exists ...", "linked ...".
"""
import argparse
import base64
import json
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

API = "/@@API/senaite/v1"
MARK = "senaite-sync-e2e"


class Api(object):
    def __init__(self, site, user, password):
        self.site = site.rstrip("/")
        self.base = self.site + API
        tok = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.auth = "Basic " + tok

    def call(self, method, path, body=None, form=False, expect_ok=True):
        url = path if path.startswith("http") else self.base + path
        headers = {"Accept": "application/json", "Authorization": self.auth}
        data = None
        if body is not None and form:
            pairs = []
            for k, v in body.items():
                if isinstance(v, (list, tuple)):
                    pairs.extend(("%s:list" % k, x) for x in v)
                else:
                    pairs.append((k, v))
            data = urllib.parse.urlencode(pairs).encode("utf-8")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            resp = urllib.request.urlopen(req, timeout=300)
            status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            doc = json.loads(raw.decode("utf-8"))
        except ValueError:
            doc = None
        ok = status == 204 or (200 <= status < 300 and isinstance(doc, dict)
                               and doc.get("success", True) is not False)
        if expect_ok and not ok:
            raise RuntimeError("%s %s -> %s: %s" % (method, url, status, raw[:1500]))
        return status, doc

    def items(self, query):
        _, doc = self.call("GET", "/search?" + query + "&limit=1000")
        return doc["items"]

    def get(self, uid):
        _, doc = self.call("GET", "/%s?complete=yes" % uid)
        return doc


def find(items, pred):
    for it in items:
        if pred(it):
            return it
    return None


def report(what, verb, obj):
    print("%-7s %-16s %-32s %s" % (verb, what, obj.get("uid", ""), obj.get("path", "")))


def ensure_attachment_type(s, setup):
    title = "E2E Evidence"
    hit = find(s.items("portal_type=AttachmentType"), lambda i: i.get("title") == title)
    if hit:
        report("AttachmentType", "exists", hit)
        return hit
    _, doc = s.call("POST", "/create", {
        "portal_type": "AttachmentType", "parent_path": setup + "/attachmenttypes",
        "title": title, "description": "Attachments made by the end-to-end seed"})
    obj = doc["items"][0]
    report("AttachmentType", "created", obj)
    return obj


def pdf_bytes():
    body = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
            b"trailer << /Root 1 0 R >>\n%%EOF\n")
    return body


def ensure_attachment(s, key, client, sample, atype, filename, data, content_type):
    """An Attachment in `client` carrying `key` in AttachmentKeys, linked to `sample`."""
    marker = "%s:%s" % (MARK, key)
    existing = s.items("portal_type=Attachment&path=%s&depth=1" % urllib.parse.quote(client["path"]))
    hit = None
    for it in existing:
        full = s.get(it["uid"])
        if (full.get("AttachmentKeys") or "") == marker:
            hit = full
            break
    if hit:
        report("Attachment", "exists", hit)
        att = hit
    else:
        body = {
            "portal_type": "Attachment", "parent_path": client["path"],
            "AttachmentFile": base64.b64encode(data).decode("ascii"),
            "filename": filename, "AttachmentKeys": marker,
            "AttachmentType": atype["uid"], "RenderInReport": False,
        }
        if content_type:
            body["content_type"] = content_type
        status, doc = s.call("POST", "/create", body, expect_ok=False)
        if not (200 <= status < 300 and doc and doc.get("items")):
            # non-ASCII values can fail as JSON on Python 2; form-encoded UTF-8 works
            body["RenderInReport"] = ""
            _, doc = s.call("POST", "/create", body, form=True)
        att = doc["items"][0]
        report("Attachment", "created", att)
    # link it to the sample (keeping attachments already linked)
    smp = s.get(sample["uid"])
    linked = [a.get("uid") for a in (smp.get("Attachment") or []) if isinstance(a, dict)]
    if att["uid"] not in linked:
        s.call("POST", "/update", {"uid": sample["uid"], "Attachment": linked + [att["uid"]]})
        print("linked  %-16s %-32s -> %s" % ("Attachment", att["uid"], sample["path"]))
    return att


def ensure_contact(s, client, first, last, marker, form=False):
    existing = s.items("portal_type=Contact&getParentUID=%s" % client["uid"])
    for it in existing:
        full = s.get(it["uid"])
        if full.get("JobTitle") == marker:
            report("Contact", "exists", full)
            return full
    body = {"portal_type": "Contact", "parent_path": client["path"],
            "Firstname": first, "Surname": last, "JobTitle": marker,
            "EmailAddress": "%s@example.org" % marker.replace(":", ".")}
    status, doc = s.call("POST", "/create", body, form=form, expect_ok=False)
    if not (200 <= status < 300 and doc and doc.get("items")):
        _, doc = s.call("POST", "/create", body, form=True)
    obj = doc["items"][0]
    report("Contact", "created", obj)
    return obj


def ensure_batch(s, client):
    marker = "%s:batch" % MARK
    for it in s.items("portal_type=Batch"):
        full = s.get(it["uid"])
        if full.get("ClientBatchID") == marker:
            report("Batch", "exists", full)
            return full
    body = {"portal_type": "Batch", "parent_path": client["path"], "Client": client["uid"],
            "title": "Lot Ü-42 Größe ½", "ClientBatchID": marker,
            "description": "  spaced description  "}
    status, doc = s.call("POST", "/create", body, form=True, expect_ok=False)
    if not (200 <= status < 300 and doc and doc.get("items")):
        # "500 but created": look it up again
        for it in s.items("portal_type=Batch"):
            full = s.get(it["uid"])
            if full.get("ClientBatchID") == marker:
                report("Batch", "created", full)
                return full
        raise RuntimeError("Batch not created: %s %s" % (status, doc))
    obj = doc["items"][0]
    report("Batch", "created", obj)
    return obj


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("site", help="site URL, e.g. http://127.0.0.1:8081/senaite")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="admin")
    ap.add_argument("--big-mib", type=int, default=3, help="size of the random attachment")
    a = ap.parse_args()
    t0 = time.time()
    s = Api(a.site, a.user, a.password)
    site_path = "/" + a.site.rstrip("/").rsplit("/", 1)[-1]
    setup = site_path + "/setup"

    clients = {c["title"]: c for c in s.items("portal_type=Client")}
    samples = s.items("portal_type=AnalysisRequest&sort_on=created&sort_order=ascending")
    if len(clients) < 2 or len(samples) < 2:
        sys.exit("the site is not seeded: run ../shared/senaite/seed.sh %s first" % a.site)
    by_client = {}
    for smp in samples:
        by_client.setdefault(smp["parent_path"], []).append(smp)
    # samples that still accept attachments (not verified/cancelled/published)
    open_states = ("sample_due", "sample_received", "to_be_verified", "registered")
    open_samples = [x for x in samples if x.get("review_state") in open_states]
    if not open_samples:
        sys.exit("no sample in an open state to attach files to")
    first = open_samples[0]
    second = next((x for x in open_samples if x["parent_path"] != first["parent_path"]),
                  open_samples[-1])
    client_of = {c["path"]: c for c in clients.values()}

    atype = ensure_attachment_type(s, setup)
    rnd = random.Random(20261126)
    big = rnd.randbytes(a.big_mib * 1024 * 1024)
    ensure_attachment(s, "big", client_of[first["parent_path"]], first, atype,
                      "random-%dMiB.bin" % a.big_mib, big, "application/octet-stream")
    ensure_attachment(s, "pdf", client_of[first["parent_path"]], first, atype,
                      "report.pdf", pdf_bytes(), "application/pdf")
    ensure_attachment(s, "nonascii", client_of[second["parent_path"]], second, atype,
                      u"Prüfbericht-µg-Ø.txt",
                      u"Messwerte: 12,3 µg/l — grün ✓\n".encode("utf-8"), "text/plain")

    c2 = client_of[second["parent_path"]]
    dora = ensure_contact(s, c2, "Dora", "Dormant", "%s:dormant" % MARK)
    full = s.call("GET", "/%s?workflow=yes" % dora["uid"])[1]
    if full.get("review_state") != "inactive":
        s.call("POST", "/update", {"uid": dora["uid"], "transition": "deactivate"})
        print("deact.  %-16s %-32s %s" % ("Contact", dora["uid"], dora.get("path", "")))
    else:
        print("exists  %-16s %-32s inactive" % ("Contact", dora["uid"]))
    ensure_contact(s, c2, u"Zoë", u"Ångström", "%s:unicode" % MARK, form=True)
    ensure_batch(s, c2)
    # A local role (a sharing role the user lacks globally) for the local_roles table to carry.
    s.call("POST", s.site + c2["path"][len(site_path):] + "/@sharing",
           {"entries": [{"id": "analyst1", "type": "user", "roles": {"Verifier": True}}],
            "inherit": True})
    print("shared  %-16s %-32s analyst1: Verifier" % ("Client", c2["uid"]))
    print("seed_extra done in %.1fs" % (time.time() - t0))


if __name__ == "__main__":
    main()
