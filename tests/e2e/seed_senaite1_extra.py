#!/usr/bin/env python3
"""Add to a SENAITE 1.3.5 site seeded by ../shared/senaite1/seed1.py the composite setup values
the 1.x -> 2.6 end-to-end test (tests/integration/e2e_senaite1.rs) checks and seed1.py does not
make, set the way a 1.3.5 user sets them: through the sites' own Archetypes edit forms
(base_edit), so the stored records have the keys 1.3.5 itself writes. Standard library only.

    python3 tests/e2e/seed_senaite1_extra.py http://127.0.0.1:8296/senaite [--user admin --password admin]

Get-or-create by title through senaite.jsonapi 1.2.4, then one edit-form save each:
  - a Container "E2E Glass bottle", a Preservation "E2E Cool" and a Container "E2E
    Pre-preserved jar", pre-preserved with that preservation;
  - an AnalysisProfile "E2E Metals" with two services, the first hidden
    (AnalysisServicesSettings [{uid, hidden}]);
  - an ARTemplate "E2E Routine" with a sample point and a sample type, the same services, the
    second hidden and in partition part-2; partition part-1 with the container, preservation
    and a sample type (1.3.5 keeps titles under Container/Preservation/SampleType and uids
    under *_uid), part-2 empty;
  - a Supplier "E2E Acme" with a physical and a postal address (state, district), no billing
    address, and a Supplier "E2E Blank" saved without any address (three all-empty dicts);
  - a blank and a control ReferenceDefinition ("E2E Blank definition", "E2E Control
    definition"), a Method "E2E Method" and an Instrument "E2E Instrument" of that method
    (with an InstrumentType, a Manufacturer and the supplier E2E Acme);
  - a WorksheetTemplate "E2E Worksheet" restricted to that method, preferring that
    instrument, with both services and a
    four-position layout: an analysis, a blank, a control and a duplicate of position 1. Its
    layout widget's selects are all submitted, hidden or not (as a browser does), so every
    1.3.5 row holds the first blank and control definitions and the rows after the first a
    `dup`; only the row's type says which one counts;
  - a SampleType "E2E Stickers" with two admitted sticker templates and small and large
    defaults (1.3.5's records widget for AdmittedStickerTemplates).
Re-runs save the same values again. Prints one line per object.
"""
import argparse
import base64
import json
import sys
import urllib.parse
import urllib.request
from html.parser import HTMLParser

API = "/@@API/senaite/v1"


class EditForm(HTMLParser):
    """The name/value pairs a browser submits from an AT `edit_form` as rendered."""

    def __init__(self):
        super().__init__()
        self.pairs = []
        self.inside = False
        self.select = None
        self.textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("name") == "edit_form":
            self.inside = True
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind in ("submit", "button", "file", "image"):
                return
            self.pairs.append((name, a.get("value", "")))
        elif tag == "select" and name:
            self.select = [name, None, None]
        elif tag == "option" and self.select is not None:
            if self.select[2] is None:
                self.select[2] = a.get("value", "")
            if "selected" in a:
                self.select[1] = a.get("value", "")
        elif tag == "textarea" and name:
            self.textarea = [name, ""]

    def handle_data(self, data):
        if self.textarea is not None:
            self.textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select" and self.select is not None:
            name, chosen, first = self.select
            self.pairs.append((name, chosen if chosen is not None else (first or "")))
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            self.pairs.append(tuple(self.textarea))
            self.textarea = None


class Site(object):
    def __init__(self, url, user, password):
        self.site = url.rstrip("/")
        tok = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.auth = "Basic " + tok

    def request(self, url, data=None, content_type=None):
        headers = {"Authorization": self.auth, "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.read().decode("utf-8", "replace")

    def api(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        text = self.request(self.site + API + path, data,
                            "application/json" if data else None)
        out = json.loads(text)
        if isinstance(out, dict) and out.get("success") is False:
            raise SystemExit("%s: %s" % (path, out.get("message")))
        return out

    def search(self, portal_type):
        q = urllib.parse.urlencode({"portal_type": portal_type, "complete": "yes",
                                    "limit": "1000", "sort_on": "sortable_title"})
        return self.api("/search?" + q)["items"]

    def find(self, portal_type, title):
        for o in self.search(portal_type):
            if o.get("title") == title:
                return o
        return None

    def get_or_create(self, portal_type, parent_path, title, fields):
        o = self.find(portal_type, title)
        if o is not None:
            print("exists  %s %s" % (portal_type, o["path"]))
            return o
        body = {"portal_type": portal_type, "parent_path": parent_path, "title": title}
        body.update(fields)
        data = json.dumps(body).encode()
        out = json.loads(self.request(self.site + API + "/create", data, "application/json"))
        # 1.3.5 answers a SampleType create with success:false ("'NoneType' object has no
        # attribute '__getitem__'") yet creates it (../shared/senaite1/README.md): look again.
        o = self.find(portal_type, title)
        if o is None:
            raise SystemExit("create %s %r: %s" % (portal_type, title, out.get("message")))
        print("created %s %s" % (portal_type, o["path"]))
        return o

    def edit(self, obj, drop_prefixes, extra):
        """Saves obj's base_edit form as rendered, less drop_prefixes, plus extra pairs."""
        # The object's own URL: the site's origin and the object's path (a create answers the
        # url of the object before its rename after creation).
        parts = urllib.parse.urlsplit(self.site)
        url = "%s://%s%s" % (parts.scheme, parts.netloc, obj["path"])
        form = EditForm()
        form.feed(self.request(url + "/base_edit"))
        pairs = [(k, v) for k, v in form.pairs
                 if not any(k.startswith(p) for p in drop_prefixes)]
        pairs += extra + [("form.submitted", "1"), ("form.button.save", "Save")]
        data = urllib.parse.urlencode(pairs).encode()
        self.request(url + "/base_edit", data, "application/x-www-form-urlencoded")
        print("saved   %s %s" % (obj["portal_type"], obj["path"]))


def partition_row(part_id, container=None, preservation=None, sampletype=None):
    """The inputs of one row of 1.3.5's ARTemplate partitions widget."""
    def sub(key, obj, uid_key):
        return [("Partitions.%s:records:ignore_empty" % key, obj["title"] if obj else ""),
                ("Partitions.%s:records:ignore_empty" % uid_key, obj["uid"] if obj else "")]
    row = [("Partitions.part_id:records:ignore_empty", part_id)]
    row += sub("Container", container, "container_uid")
    row += sub("Preservation", preservation, "preservation_uid")
    row += sub("SampleType", sampletype, "sampletype_uid")
    return row


def address(kind, **values):
    """The inputs of one 1.3.5 AddressWidget (all six keys, empty unless given)."""
    keys = ("address", "city", "zip", "country", "state", "district")
    return [("%s.%s:record" % (kind, k), values.get(k, "")) for k in keys]


def layout_rows(rows, blank_def, control_def):
    """The inputs of 1.3.5's worksheet template layout widget for `rows` [(type, dup)]: every
    row posts its position, its type and the blank, control and duplicate selects (hidden
    selects are submitted too, holding their first option: the first definition; an empty
    duplicate select, the first row's, posts nothing)."""
    pairs = [("NoOfPositions", str(len(rows)))]
    for pos, (kind, dup) in enumerate(rows, start=1):
        pairs += [("Layout.pos:records:ignore_empty", str(pos)),
                  ("Layout.type:records:ignore_empty", kind),
                  ("Layout.blank_ref:records:ignore_empty", blank_def["uid"]),
                  ("Layout.control_ref:records:ignore_empty", control_def["uid"])]
        if dup:
            pairs.append(("Layout.dup:records:ignore_empty", str(dup)))
    return pairs


def seed_worksheet_template(s, services, supplier):
    blank_def = s.get_or_create("ReferenceDefinition",
                                "/senaite/bika_setup/bika_referencedefinitions",
                                "E2E Blank definition", {"Blank": True})
    control_def = s.get_or_create("ReferenceDefinition",
                                  "/senaite/bika_setup/bika_referencedefinitions",
                                  "E2E Control definition", {"Blank": False})
    method = s.get_or_create("Method", "/senaite/methods", "E2E Method", {})
    kind = s.get_or_create("InstrumentType", "/senaite/bika_setup/bika_instrumenttypes",
                           "E2E Instrument type", {})
    maker = s.get_or_create("Manufacturer", "/senaite/bika_setup/bika_manufacturers",
                            "E2E Manufacturer", {})
    instrument = s.get_or_create("Instrument", "/senaite/bika_setup/bika_instruments",
                                 "E2E Instrument",
                                 {"InstrumentType": kind["uid"], "Manufacturer": maker["uid"],
                                  "Supplier": supplier["uid"], "Methods": [method["uid"]]})
    wst = s.get_or_create("WorksheetTemplate", "/senaite/bika_setup/bika_worksheettemplates",
                          "E2E Worksheet", {})
    rows = [("a", None), ("b", 1), ("c", 1), ("d", 1)]
    s.edit(wst, ["Layout.", "NoOfPositions", "uids", "RestrictToMethod", "Instrument:list"],
           layout_rows(rows, blank_def, control_def)
           + [("uids:list", x["uid"]) for x in services]
           + [("RestrictToMethod", method["uid"]), ("Instrument:list", instrument["uid"])])


def seed_sticker_templates(s):
    sampletype = s.get_or_create("SampleType", "/senaite/bika_setup/bika_sampletypes",
                                 "E2E Stickers", {"Prefix": "E2ES",
                                                  "MinimumVolume": "10 ml"})
    key = "AdmittedStickerTemplates"
    s.edit(sampletype, [key + "."], [
        (key + ".admitted:records:list", "Code_128_1x48mm.pt"),
        (key + ".admitted:records:list", "QR_1x14mmx39mm.pt"),
        (key + ".small_default:records:ignore_empty", "Code_128_1x48mm.pt"),
        (key + ".large_default:records:ignore_empty", "QR_1x14mmx39mm.pt")])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("site")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="admin")
    args = ap.parse_args()
    s = Site(args.site, args.user, args.password)

    services = s.search("AnalysisService")[:2]
    sampletypes = s.search("SampleType")
    samplepoints = s.search("SamplePoint")
    if len(services) < 2 or not sampletypes or not samplepoints:
        raise SystemExit("run seed1.py first: needs two analysis services, a sample type and "
                         "a sample point")
    s1, s2 = services
    container = s.get_or_create("Container", "/senaite/bika_setup/bika_containers",
                                "E2E Glass bottle", {"Capacity": "1000 ml"})
    preservation = s.get_or_create("Preservation", "/senaite/bika_setup/bika_preservations",
                                   "E2E Cool", {"Category": "field"})
    # A pre-preserved container (2.6 requires its preservation): PrePreserved -> pre_preserved.
    jar = s.get_or_create("Container", "/senaite/bika_setup/bika_containers",
                          "E2E Pre-preserved jar", {"Capacity": "250 ml"})
    s.edit(jar, ["PrePreserved", "Preservation"],
           [("PrePreserved:boolean", "on"), ("Preservation:list", preservation["uid"])])

    # The analyses widgets of profile and template post the selected services as `uids`,
    # the hidden ones as `Hidden.<uid>` = "on" and (template) `Partition.<uid>`.
    listing = ["uids", "Hidden.", "Partition."]
    profile = s.get_or_create("AnalysisProfile", "/senaite/bika_setup/bika_analysisprofiles",
                              "E2E Metals", {"ProfileKey": "E2EM",
                                             "Service": [s1["uid"], s2["uid"]]})
    s.edit(profile, listing, [("uids:list", s1["uid"]), ("uids:list", s2["uid"]),
                              ("Hidden.%s:record:ignore_empty" % s1["uid"], "on")])

    template = s.get_or_create("ARTemplate", "/senaite/bika_setup/bika_artemplates",
                               "E2E Routine", {})
    rows = partition_row("part-1", container, preservation, sampletypes[0])
    rows += partition_row("part-2")
    # Its sample point and sample type: 1.3.5's reference widgets submit the title under the
    # field name and the uid under `<field>_uid`.
    point = samplepoints[0]
    refs = [("SamplePoint", point["title"]), ("SamplePoint_uid", point["uid"]),
            ("SampleType", sampletypes[0]["title"]),
            ("SampleType_uid", sampletypes[0]["uid"])]
    s.edit(template, listing + ["Partitions.", "SamplePoint", "SampleType"], rows + refs + [
        ("uids:list", s1["uid"]), ("uids:list", s2["uid"]),
        ("Partition.%s:records" % s1["uid"], "part-1"),
        ("Partition.%s:records" % s2["uid"], "part-2"),
        ("Hidden.%s:record:ignore_empty" % s2["uid"], "on")])

    kinds = ["PhysicalAddress.", "PostalAddress.", "BillingAddress."]
    acme = s.get_or_create("Supplier", "/senaite/bika_setup/bika_suppliers", "E2E Acme",
                           {"Name": "E2E Acme"})
    s.edit(acme, kinds,
           address("PhysicalAddress", address="1 Main St", city="Cape Town", zip="8001",
                   country="South Africa", state="Western Cape", district="City of Cape Town")
           + address("PostalAddress", address="PO Box 12", city="Cape Town", zip="8000",
                     country="South Africa", state="Western Cape")
           + address("BillingAddress"))
    blank = s.get_or_create("Supplier", "/senaite/bika_setup/bika_suppliers", "E2E Blank",
                            {"Name": "E2E Blank"})
    s.edit(blank, kinds, address("PhysicalAddress") + address("PostalAddress")
           + address("BillingAddress"))
    seed_worksheet_template(s, [s1, s2], acme)
    seed_sticker_templates(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
