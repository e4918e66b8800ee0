#!/usr/bin/env python3
"""seed_bika.py SITE_URL -- seed a small lab into a real BIKA LIMS 3.1 site (stdlib only).

SITE_URL e.g. http://127.0.0.1:8495/lims ; basic auth admin:admin (--user u:p).
Modelled on ../shared/bika/record.py, but through bika.lims' own legacy API only
(SITE/@@API/read|create|update|doActionFor, form-encoded POSTs):

  clients    Happy Hills (HH), Lakeside (LS), each with a contact
  setup      lab contact, department, category Metals, services Calcium (Ca) and
             Magnesium (Mg), sample types Water (W) and Soil (S), a sample point,
             sample conditions Chilled (active) and Frozen (deactivated)
  samples    one analysis request per state, told apart by ClientSampleID:
             seed-due (sample_due), seed-received (sample_received),
             seed-submitted (results entered and submitted: to_be_verified),
             seed-verified (verified: the Zope-root admin may verify its own results),
             seed-cancelled (cancellation_state cancelled),
             seed-lakeside (client LS, Mg, received),
             seed-partitioned (a sample in two partitions: Calcium in -P1, container
             Bottle 500 ml, Magnesium in -P2, container Vial 50 ml with preservation
             Acidified; received, both results submitted). BIKA's legacy create makes one
             partition only: this one goes through the AR add form's own submit view
             (CLIENT/analysisrequest_submit, its `state` JSON with the Partitions the form's
             JavaScript computes, and the _authenticator every legacy read answers with)
  setup      (for the partitions) containers Bottle 500 ml and Vial 50 ml, preservation
             Acidified
  attachment an Attachment with a binary file (multipart upload), referenced by
             seed-submitted's Attachment field
  users      Plone users analyst1 (Analyst) and labmanager1 (LabManager), added through
             the ZMI of acl_users (neither JSON API creates users; the ZMI forms need a
             session cookie and their csrf_token)

  --samples N  N more analysis requests for benchmarks (benches/real_bika/), told apart
             by ClientSampleID bulk-00001 ...: clients HH and LS in turn, Water, Calcium and
             Magnesium (two analyses each); every second one received (doActionFor_many,
             in batches). Each costs ~0.3 s on the server (bika creates the AR, its Sample,
             a partition and the analyses).

Idempotent: every part is created only when a read finds none, every transition
only when the object is not yet in the target state. Prints what it did.
"""
import argparse
import base64
import http.cookiejar
import re
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

ap = argparse.ArgumentParser()
ap.add_argument("site")
ap.add_argument("--user", default="admin:admin")
ap.add_argument("--samples", type=int, default=0,
                help="N more analysis requests (bulk-00001 ...), for benchmarks")
args = ap.parse_args()
SITE = args.site.rstrip("/")
AUTH = "Basic " + base64.b64encode(args.user.encode()).decode()

# The attachment's bytes: every byte value, so a text-mode mangling shows.
ATTACHMENT_BYTES = bytes(range(256)) * 4 + b"senaite-sync bika attachment\n"


def post(route, form=None, body=None, ctype=None):
    data = body if body is not None else urllib.parse.urlencode(form or {}, doseq=True).encode()
    req = urllib.request.Request(SITE + "/@@API/" + route, data=data, method="POST")
    req.add_header("Authorization", AUTH)
    req.add_header("Content-Type", ctype or "application/x-www-form-urlencoded")
    try:
        raw = urllib.request.urlopen(req, timeout=120).read()
    except urllib.error.HTTPError as e:
        raw = e.read()
        sys.exit("%s %s -> HTTP %d: %s" % (route, form, e.code, raw[:500]))
    try:
        out = json.loads(raw.decode("utf-8"))
    except ValueError:
        sys.exit("%s %s -> not JSON: %s" % (route, form, raw[:500]))
    if out.get("success") is False:
        sys.exit("%s %s -> %s" % (route, form, out.get("message") or out.get("error")))
    return out


def post_to(path, form):
    """A form POST to a site-relative browser view (e.g. a client's analysisrequest_submit)."""
    req = urllib.request.Request(SITE + path, method="POST",
                                 data=urllib.parse.urlencode(form, doseq=True).encode())
    req.add_header("Authorization", AUTH)
    try:
        raw = urllib.request.urlopen(req, timeout=120).read()
    except urllib.error.HTTPError as e:
        sys.exit("%s -> HTTP %d: %s" % (path, e.code, e.read()[:500]))
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError:
        sys.exit("%s -> not JSON: %s" % (path, raw[:500]))


def read(catalog, **flt):
    form = {"catalog_name": catalog, "page_size": "0"}
    form.update(flt)
    return post("read", form)["objects"]


def title_of(o, key):
    if key == "getFullname":
        return "%s %s" % (o.get("Firstname"), o.get("Surname"))
    return o.get(key)


def ensure(catalog, portal_type, title_key, title, create_form):
    """The object of portal_type whose title_key is title; created when missing."""
    found = [o for o in read(catalog, portal_type=portal_type) if title_of(o, title_key) == title]
    if found:
        return found[0]
    form = {"obj_type": portal_type}
    form.update(create_form)
    post("create", form)
    print("created %s %s" % (portal_type, title))
    found = [o for o in read(catalog, portal_type=portal_type) if title_of(o, title_key) == title]
    if not found:
        sys.exit("created %s %s but cannot read it back" % (portal_type, title))
    return found[0]


def rel(path):
    """Site-relative path (/clients/client-1) of a physical one (/lims/clients/client-1)."""
    return "/" + path.split("/", 2)[2]


def action(catalog, uid, name, extra=None):
    form = {"catalog_name": catalog, "UID": uid, "action": name, "include_fields": "UID"}
    form.update(extra or {})
    post("doActionFor", form)


# --- clients and contacts
hh = ensure("portal_catalog", "Client", "Name", "Happy Hills",
            {"obj_path": "/clients", "Name": "Happy Hills", "ClientID": "HH",
             "EmailAddress": "hh@example.com"})
ls = ensure("portal_catalog", "Client", "Name", "Lakeside",
            {"obj_path": "/clients", "Name": "Lakeside", "ClientID": "LS",
             "EmailAddress": "ls@example.com", "Phone": "+1 555 0199"})
ensure("portal_catalog", "Contact", "getFullname", "Rita Mohale",
       {"obj_path": rel(hh["path"]), "Firstname": "Rita", "Surname": "Mohale",
        "EmailAddress": "rita@example.com"})
ensure("portal_catalog", "Contact", "getFullname", "Sam Lake",
       {"obj_path": rel(ls["path"]), "Firstname": "Sam", "Surname": "Lake",
        "EmailAddress": "sam@example.com"})

# --- setup
ensure("bika_setup_catalog", "LabContact", "getFullname", "Lab Manager",
       {"obj_path": "/bika_setup/bika_labcontacts", "Firstname": "Lab", "Surname": "Manager",
        "EmailAddress": "lab@example.com"})
ensure("bika_setup_catalog", "Department", "title", "Chemistry",
       {"obj_path": "/bika_setup/bika_departments", "title": "Chemistry",
        "Manager": "portal_type:LabContact|getFullname:Lab Manager"})
ensure("bika_setup_catalog", "AnalysisCategory", "title", "Metals",
       {"obj_path": "/bika_setup/bika_analysiscategories", "title": "Metals",
        "Department": "portal_type:Department|title:Chemistry"})
for title, kw in [("Calcium", "Ca"), ("Magnesium", "Mg")]:
    ensure("bika_setup_catalog", "AnalysisService", "title", title,
           {"obj_path": "/bika_setup/bika_analysisservices", "title": title, "Keyword": kw,
            "Category": "portal_type:AnalysisCategory|title:Metals"})
sp = ensure("bika_setup_catalog", "SamplePoint", "title", "Well 1",
            {"obj_path": "/bika_setup/bika_samplepoints", "title": "Well 1"})
for title, prefix in [("Water", "W"), ("Soil", "S")]:
    ensure("bika_setup_catalog", "SampleType", "title", title,
           {"obj_path": "/bika_setup/bika_sampletypes", "title": title, "Prefix": prefix,
            "MinimumVolume": "100 ml"})
water = [o for o in read("bika_setup_catalog", portal_type="SampleType") if o.get("title") == "Water"][0]
if sp["UID"] not in (water.get("SamplePoints_uid") or []):
    post("update", {"obj_path": rel(water["path"]), "SamplePoints": "uid:" + sp["UID"]})
    print("linked Water -> Well 1")
ensure("bika_setup_catalog", "SampleCondition", "title", "Chilled",
       {"obj_path": "/bika_setup/bika_sampleconditions", "title": "Chilled"})
frozen = ensure("bika_setup_catalog", "SampleCondition", "title", "Frozen",
                {"obj_path": "/bika_setup/bika_sampleconditions", "title": "Frozen"})
if read("bika_setup_catalog", UID=frozen["UID"])[0].get("inactive_state") == "active":
    action("bika_setup_catalog", frozen["UID"], "deactivate")
    print("deactivated Frozen")

# --- samples
SAMPLES = [
    # ClientSampleID, client, contact, sample type, services, target
    ("seed-due", "Happy Hills", "Rita Mohale", "Water", ["Calcium"], "due"),
    ("seed-received", "Happy Hills", "Rita Mohale", "Water", ["Calcium", "Magnesium"], "received"),
    ("seed-submitted", "Happy Hills", "Rita Mohale", "Water", ["Calcium", "Magnesium"], "submitted"),
    ("seed-verified", "Happy Hills", "Rita Mohale", "Soil", ["Calcium"], "verified"),
    ("seed-cancelled", "Happy Hills", "Rita Mohale", "Water", ["Magnesium"], "cancelled"),
    ("seed-lakeside", "Lakeside", "Sam Lake", "Water", ["Magnesium"], "received"),
]
RESULTS = {"Ca": "12.5", "Mg": "3.25"}
clients = {c.get("Name"): c for c in read("portal_catalog", portal_type="Client")}


def ars_by_csid():
    return {o.get("ClientSampleID"): o for o in read("bika_catalog", portal_type="AnalysisRequest")}


ars = ars_by_csid()
for csid, client, contact, stype, services, target in SAMPLES:
    if csid not in ars:
        form = [("obj_type", "AnalysisRequest"),
                ("Client", "portal_type:Client|id:" + clients[client]["id"]),
                ("SampleType", "portal_type:SampleType|title:" + stype),
                ("Contact", "portal_type:Contact|getFullname:" + contact),
                ("ClientSampleID", csid),
                ("SamplingDate", "2026-11-26")]
        form += [("Services:list", "portal_type:AnalysisService|title:" + s) for s in services]
        out = post("create", form)
        print("created %s %s" % (out.get("ar_id"), csid))
ars = ars_by_csid()
for csid, client, contact, stype, services, target in SAMPLES:
    ar = ars[csid]
    if target == "cancelled":
        if ar.get("cancellation_state") != "cancelled":
            action("bika_catalog", ar["UID"], "cancel")
            print("cancelled %s" % ar["id"])
        continue
    if target == "due":
        continue
    if ar.get("review_state") == "sample_due":
        action("bika_catalog", ar["UID"], "receive")
        print("received %s" % ar["id"])
    if target == "received":
        continue
    analyses = read("bika_analysis_catalog", portal_type="Analysis",
                    include_fields="UID,path,Keyword,Result,review_state",
                    getRequestID=ar["id"])
    for an in analyses:
        if an.get("review_state") == "sample_received":
            if an.get("Result") != RESULTS[an["Keyword"]]:
                post("update", {"obj_path": rel(an["path"]), "Result": RESULTS[an["Keyword"]]})
            action("bika_analysis_catalog", an["UID"], "submit")
            print("submitted %s %s" % (ar["id"], an["Keyword"]))
    if target == "verified":
        for an in read("bika_analysis_catalog", portal_type="Analysis",
                       include_fields="UID,review_state", getRequestID=ar["id"]):
            if an.get("review_state") == "to_be_verified":
                action("bika_analysis_catalog", an["UID"], "verify")
                print("verified %s %s" % (ar["id"], an["UID"]))

# --- a sample in two partitions (BIKA's AR add form, analysisrequest_submit): Calcium in
# W-....-P1 (container Bottle 500 ml), Magnesium in W-....-P2 (container Vial 50 ml, preservation
# Acidified), received, results entered and submitted. The legacy create makes one partition
# only; the add form's submit takes the partitions its JavaScript computes (state.Partitions)
# and needs the form's _authenticator, which every legacy read answers with.
def ensure_setup(portal_type, folder, title, extra):
    form = {"obj_path": "/bika_setup/" + folder, "title": title}
    form.update(extra)
    return ensure("bika_setup_catalog", portal_type, "title", title, form)


acidified = ensure_setup("Preservation", "bika_preservations", "Acidified", {"Category": "lab"})
bottle = ensure_setup("Container", "bika_containers", "Bottle 500 ml", {"Capacity": "500 ml"})
vial = ensure_setup("Container", "bika_containers", "Vial 50 ml", {"Capacity": "50 ml"})
if "seed-partitioned" not in ars_by_csid():
    got = post("read", {"catalog_name": "bika_setup_catalog", "portal_type": "AnalysisService",
                        "page_size": "0", "include_fields": "UID,title"})
    svc = {o["title"]: o["UID"] for o in got["objects"]}
    contact = [o for o in read("portal_catalog", portal_type="Contact")
               if title_of(o, "getFullname") == "Rita Mohale"][0]
    state = {"0": {
        "Client": hh["UID"], "Client_uid": hh["UID"],
        "Contact": contact["UID"], "Contact_uid": contact["UID"],
        "SampleType": water["UID"], "SampleType_uid": water["UID"],
        "SamplingDate": "2026-11-26", "ClientSampleID": "seed-partitioned", "Sample": "",
        "Analyses": [svc["Calcium"], svc["Magnesium"]],
        "Partitions": [
            {"services": [svc["Calcium"]], "container_uid": [bottle["UID"]], "preservation_uid": ""},
            {"services": [svc["Magnesium"]], "container_uid": [vial["UID"]], "preservation_uid": ""},
        ]}}
    out = post_to(rel(hh["path"]) + "/analysisrequest_submit",
                  {"state": json.dumps(state), "_authenticator": got["_authenticator"]})
    if "success" not in out or out.get("errors"):
        sys.exit("analysisrequest_submit -> %s" % out)
    print("created seed-partitioned (two partitions)")
part_ar = ars_by_csid()["seed-partitioned"]
parts = {o["id"]: o for o in read("portal_catalog", portal_type="SamplePartition")
         if o["path"].startswith(part_ar["path"].rsplit("/", 1)[0] + "/" + part_ar["Sample"] + "/")}
if len(parts) != 2:
    sys.exit("seed-partitioned: expected 2 partitions, found %s" % sorted(parts))
p2 = parts[part_ar["Sample"] + "-P2"]
if acidified["UID"] not in (p2.get("Preservation_uid") or ""):
    post("update", {"obj_path": rel(p2["path"]), "Preservation": "uid:" + acidified["UID"]})
    print("preservation Acidified on %s" % p2["id"])
if part_ar.get("review_state") == "sample_due":
    action("bika_catalog", part_ar["UID"], "receive")
    print("received %s" % part_ar["id"])
for an in read("bika_analysis_catalog", portal_type="Analysis",
               include_fields="UID,path,Keyword,Result,review_state", getRequestID=part_ar["id"]):
    if an.get("review_state") == "sample_received":
        if an.get("Result") != RESULTS[an["Keyword"]]:
            post("update", {"obj_path": rel(an["path"]), "Result": RESULTS[an["Keyword"]]})
        action("bika_analysis_catalog", an["UID"], "submit")
        print("submitted %s %s" % (part_ar["id"], an["Keyword"]))

# --- an attachment with binary bytes, referenced by seed-submitted
hh_path = rel(hh["path"])
atts = [o for o in read("portal_catalog", portal_type="Attachment", include_fields="UID,path,title")]
if not atts:
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in [("obj_type", "Attachment"), ("obj_path", hh_path), ("title", "seed attachment")]:
        parts.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                      % (boundary, k, v)).encode())
    parts.append(("--%s\r\nContent-Disposition: form-data; name=\"AttachmentFile\"; "
                  "filename=\"seed-report.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                  % boundary).encode() + ATTACHMENT_BYTES + b"\r\n")
    parts.append(("--%s--\r\n" % boundary).encode())
    post("create", body=b"".join(parts), ctype="multipart/form-data; boundary=" + boundary)
    print("created attachment")
    atts = [o for o in read("portal_catalog", portal_type="Attachment", include_fields="UID,path,title")]
att = atts[0]
sub = ars_by_csid()["seed-submitted"]
if att["UID"] not in (sub.get("Attachment_uid") or []):
    post("update", {"obj_path": rel(sub["path"]), "Attachment": "uid:" + att["UID"]})
    print("linked attachment to %s" % sub["id"])

# --- users (ZMI forms of acl_users: a cookie session and each form's csrf_token)
ZMI = urllib.request.build_opener(
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def zmi(path, form=None):
    data = urllib.parse.urlencode(form, doseq=True).encode() if form is not None else None
    req = urllib.request.Request(SITE + path, data=data)
    req.add_header("Authorization", AUTH)
    try:
        return ZMI.open(req, timeout=120).read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        sys.exit("%s -> HTTP %d: %s" % (path, e.code, e.read()[:300]))


def csrf(path):
    m = re.search(r'name="csrf_token" value="([^"]*)"', zmi(path))
    if not m:
        sys.exit("%s: no csrf_token in the form" % path)
    return m.group(1)


for user_id, role in [("analyst1", "Analyst"), ("labmanager1", "LabManager")]:
    have = post("getusers", {"roles:list": role}).get("users") or []
    if any(u.get("userid") == user_id for u in have):
        continue
    token = csrf("/acl_users/source_users/manage_users?adding=1")
    password = "Seed-" + uuid.uuid4().hex
    zmi("/acl_users/source_users/manage_addUser",
        {"user_id": user_id, "login_name": user_id, "password": password,
         "confirm": password, "csrf_token": token})
    token = csrf("/acl_users/portal_role_manager/manage_roles?role_id=%s&assign=1" % role)
    zmi("/acl_users/portal_role_manager/manage_assignRoleToPrincipals",
        {"role_id": role, "principal_ids:list": [user_id], "csrf_token": token})
    have = post("getusers", {"roles:list": role}).get("users") or []
    if not any(u.get("userid") == user_id for u in have):
        sys.exit("user %s was not created with role %s" % (user_id, role))
    print("created user", user_id, role)

# --- bulk samples for benchmarks (--samples N)
if args.samples:
    have = {o.get("ClientSampleID"): o for o in
            read("bika_catalog", portal_type="AnalysisRequest",
                 include_fields="UID,path,ClientSampleID,review_state")}
    made = 0
    for i in range(1, args.samples + 1):
        csid = "bulk-%05d" % i
        if csid in have:
            continue
        client, contact = (("Happy Hills", "Rita Mohale") if i % 2 else ("Lakeside", "Sam Lake"))
        form = [("obj_type", "AnalysisRequest"),
                ("Client", "portal_type:Client|id:" + clients[client]["id"]),
                ("SampleType", "portal_type:SampleType|title:Water"),
                ("Contact", "portal_type:Contact|getFullname:" + contact),
                ("ClientSampleID", csid),
                ("SamplingDate", "2026-11-26"),
                ("Services:list", "portal_type:AnalysisService|title:Calcium"),
                ("Services:list", "portal_type:AnalysisService|title:Magnesium")]
        post("create", form)
        made += 1
        if made % 100 == 0:
            print("created %d bulk samples" % made)
            sys.stdout.flush()
    have = {o.get("ClientSampleID"): o for o in
            read("bika_catalog", portal_type="AnalysisRequest",
                 include_fields="UID,path,ClientSampleID,review_state")}
    due = [rel(o["path"]) for c, o in sorted(have.items())
           if c and c.startswith("bulk-") and int(c[5:]) % 2 == 0
           and o.get("review_state") == "sample_due"]
    for b in range(0, len(due), 50):
        post("doActionFor_many", {"action": "receive", "f": json.dumps(due[b:b + 50])})
    print("bulk samples: %d created, %d received" % (made, len(due)))

states = {o.get("ClientSampleID"): (o["id"], o.get("review_state"), o.get("cancellation_state"))
          for o in read("bika_catalog", portal_type="AnalysisRequest",
                        include_fields="ClientSampleID,id,review_state,cancellation_state")
          if not (o.get("ClientSampleID") or "").startswith("bulk-")}
print("samples:", json.dumps(states, sort_keys=True))
