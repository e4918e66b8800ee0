# -*- coding: utf-8 -*-
# Bulk seed of a *stopped* SENAITE 2.6 instance, in-process (python 2.7, zconsole):
#
#   cd /var/lib/senaite/bench && TZ=UTC /opt/senaite/venv/bin/zconsole run etc/zope.conf \
#       /work/main/benches/real_senaite/seed_bulk.py
#
# Needs the small API seed first (seed.sh: services, sample types, sample points, 2 clients).
# Creates BULK_CLIENTS extra clients with BULK_CONTACTS contacts each, then samples with 2-5
# analyses each through SENAITE's own create_analysisrequest (ID server, events, indexing,
# snapshots included) until the uid_catalog holds BULK_TARGET objects (Reference objects not
# counted). Some samples are received, some have submitted results, some are verified.
# Deterministic (fixed random seed); commits every 20 samples, so an interrupted run can be
# re-run and continues up to the target.
from __future__ import print_function

import os
import random
import sys
import time

import transaction
from AccessControl.SecurityManagement import newSecurityManager
from Testing.makerequest import makerequest
from zope.component.hooks import setSite

app = makerequest(app)  # noqa: F821
acl = app.acl_users
newSecurityManager(None, acl.getUser("admin").__of__(acl))
site = app.senaite
setSite(site)
site.setupCurrentSkin(app.REQUEST)
request = app.REQUEST

from DateTime import DateTime  # noqa: E402
from bika.lims import api  # noqa: E402
from bika.lims.utils.analysisrequest import create_analysisrequest  # noqa: E402
from bika.lims.workflow import doActionFor  # noqa: E402

TARGET = int(os.environ.get("BULK_TARGET", "10500"))
NCLIENTS = int(os.environ.get("BULK_CLIENTS", "20"))
NCONTACTS = int(os.environ.get("BULK_CONTACTS", "5"))
rnd = random.Random(20260602)


def log(msg):
    print("[seed_bulk %s] %s" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def count_objects():
    """Objects in uid_catalog by portal_type index, without AT Reference objects."""
    idx = site.uid_catalog.Indexes["portal_type"]
    return sum(n for pt, n in idx.uniqueValues(withLengths=True) if pt != "Reference")


def search(query, catalog):
    return [b.getObject() for b in api.search(query, catalog)]


T0 = time.time()
log("objects before: %d (target %d)" % (count_objects(), TARGET))

# Self-verification makes 'verify' possible as admin (cheap way to get verified samples).
try:
    site.bika_setup.setSelfVerificationEnabled(True)
except Exception as e:  # pragma: no cover
    log("cannot enable self-verification: %r" % (e,))
transaction.commit()

services = search({"portal_type": "AnalysisService", "is_active": True}, "senaite_catalog_setup")
stypes = search({"portal_type": "SampleType"}, "senaite_catalog_setup")
spoints = search({"portal_type": "SamplePoint"}, "senaite_catalog_setup")
if not services or not stypes:
    log("no services / sample types: run seed.sh first")
    sys.exit(1)
log("%d services, %d sample types, %d sample points" % (len(services), len(stypes), len(spoints)))

# --- clients and contacts ---------------------------------------------------
t = time.time()
made = 0
existing = dict((c.getClientID(), c) for c in site.clients.objectValues("Client"))
for i in range(NCLIENTS):
    cid = "BULK%02d" % i
    client = existing.get(cid)
    if client is None:
        client = api.create(site.clients, "Client", title="Bulk Client %02d" % i,
                            Name="Bulk Client %02d" % i, ClientID=cid,
                            EmailAddress="lab%02d@bulk.example" % i,
                            Phone="+1 555 01%02d" % i)
        made += 1
    have = len(client.objectValues("Contact"))
    for j in range(have, NCONTACTS):
        api.create(client, "Contact", Firstname="Bulk%d" % j, Surname=u"Contact\u00e9 %02d" % i,
                   EmailAddress="c%d.%d@bulk.example" % (i, j),
                   BusinessPhone="+1 555 %02d%02d" % (i, j))
        made += 1
    transaction.commit()
log("clients/contacts: %d objects in %.1f s" % (made, time.time() - t))

clients = [c for c in site.clients.objectValues("Client") if c.objectValues("Contact")]
contacts = dict((api.get_uid(c), c.objectValues("Contact")) for c in clients)

# --- samples with analyses ------------------------------------------------------
RESULTS = {"Ca": "12.3", "Mg": "4.07", "ph": "7.2", "NO3": "1.9", "Ecoli": "3"}
t = time.time()
n_samples = n_created = 0
states = {"received": 0, "submitted": 0, "verified": 0}
start_count = count_objects()
total = start_count
serial = len(api.search({"portal_type": "AnalysisRequest"}, "senaite_catalog_sample"))
while total < TARGET:
    serial += 1
    client = rnd.choice(clients)
    contact = rnd.choice(contacts[api.get_uid(client)])
    svcs = rnd.sample(services, rnd.randint(2, min(5, len(services))))
    values = {
        "Contact": api.get_uid(contact),
        "SampleType": api.get_uid(rnd.choice(stypes)),
        "DateSampled": DateTime("2025/01/01 08:00:00 UTC") + rnd.random() * 365,
        "ClientSampleID": "BULK-CS-%05d" % serial,
    }
    if spoints and rnd.random() < 0.5:
        values["SamplePoint"] = api.get_uid(rnd.choice(spoints))
    ar = create_analysisrequest(client, request, values, [api.get_uid(s) for s in svcs])
    n_samples += 1
    n_created += 1 + len(svcs)
    r = rnd.random()
    if r < 0.5:
        doActionFor(ar, "receive")
        states["received"] += 1
        if r < 0.2:
            analyses = ar.getAnalyses(full_objects=True)
            for an in analyses:
                an.setResult(RESULTS.get(an.getKeyword(), "1.0"))
                doActionFor(an, "submit")
            states["submitted"] += 1
            if r < 0.08:
                for an in analyses:
                    doActionFor(an, "verify")
                states["verified"] += 1
    if n_samples % 20 == 0:
        transaction.commit()
        total = count_objects()
        dt = time.time() - t
        log("%d samples, %d objects created, catalog %d, %.1f objects/s"
            % (n_samples, n_created, total, (total - start_count) / dt))
transaction.commit()
total = count_objects()
dt = time.time() - t
log("samples: %d created (%s) -> %d catalogued objects in %.1f s = %.1f objects/s"
    % (n_samples, states, total - start_count, dt, (total - start_count) / max(dt, 1e-9)))
by_state = {}
for b in api.search({"portal_type": "AnalysisRequest"}, "senaite_catalog_sample"):
    by_state[b.review_state] = by_state.get(b.review_state, 0) + 1
log("sample states: %s" % by_state)
idx = site.uid_catalog.Indexes["portal_type"]
log("uid_catalog by portal_type: %s" % sorted(idx.uniqueValues(withLengths=True)))
log("done: %d objects (without Reference), %.1f s total" % (total, time.time() - T0))
