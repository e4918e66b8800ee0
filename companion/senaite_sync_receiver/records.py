# -*- coding: utf-8 -*-
"""Applying one snapshot record to the destination site (PROTOCOL.md, apply).

``apply_record`` finds, adopts or creates the object with the record's UID,
writes its fields, workflow history, ownership, local roles and dates, and
stores the load hash. It raises on anything that must roll the record back;
the caller owns the savepoint and the transaction.
"""
import threading

from persistent.mapping import PersistentMapping

from senaite_sync_receiver import fields as fieldio
from senaite_sync_receiver import security
from senaite_sync_receiver import workflow
from senaite_sync_receiver.compat import to_native

ANNOTATION_KEY = "senaite_sync_receiver"


# Objects whose modification date must survive the batch: the records
# applied (their record's date) and the containers and reference targets they
# touched (their date before). Creating a child fires ContainerModifiedEvent
# and AT's handler calls notifyModified on the container.
# Per thread: Zope serves requests in several worker threads, each with its
# own ZODB connection; a module-level dict would let one request clear
# another's guard and write to objects of another thread's connection.
_local = threading.local()


def _guard():
    """The current thread's {path: (obj, modified)}."""
    guard = getattr(_local, "guard", None)
    if guard is None:
        guard = _local.guard = {}
    return guard


def guard_reset():
    _guard().clear()


def guard_touch(obj):
    key = physical_path(obj)
    if key not in _guard():
        _guard()[key] = (obj, obj.modified())


def guard_set(obj):
    _guard()[physical_path(obj)] = (obj, obj.modified())


def guard_snapshot():
    return dict(_guard())


def guard_restore(saved):
    _guard().clear()
    _guard().update(saved)


def guard_finish(parents):
    """Refresh parents' catalog metadata (a sample's analyses counts), then
    put back every guarded modification date that was bumped."""
    from bika.lims import api
    for parent in parents.values():
        if api.is_portal(parent):
            continue
        guard_touch(parent)
        catalog_refresh(parent, ["getId"])
    for obj, expected in list(_guard().values()):
        if obj.modified() != expected:
            set_modified(obj, expected)
    _guard().clear()


def set_modified(obj, value):
    if hasattr(obj, "setModificationDate"):
        obj.setModificationDate(value)
    else:
        obj.modification_date = value
    catalog_refresh(obj, ["modified"])


def catalog_refresh(obj, idxs):
    """Reindex idxs and the metadata of obj in each of its catalogs.

    Not obj.reindexObject(idxs): SENAITE's multiplexer passes each catalog
    only the indexes it has, an empty list makes CMF's reindexObject call
    notifyModified(), and the date we just restored would be lost.
    """
    from bika.lims import api
    from Products.CMFCore.indexing import processQueue
    processQueue()
    for catalog in api.get_catalogs_for(obj):
        indexes = list(catalog.indexes())
        use = [i for i in idxs if i in indexes] or indexes[:1]
        catalog._reindexObject(obj, idxs=use, update_metadata=1)
    refresh_uid_catalog(obj)


def refresh_uid_catalog(obj):
    """uid_catalog keeps metadata (modified) too, but a partial AT
    reindexObject skips it: re-catalog the object there."""
    if is_dexterity(obj):
        recatalog_uid(obj)
    elif hasattr(obj, "_catalogUID"):
        obj._catalogUID(obj)


def resolve_and_touch(uid):
    obj = resolve_uid(uid)
    if obj is not None:
        guard_touch(obj)
    return obj


class RecordError(Exception):
    """The record cannot be applied; the message goes to the answer."""


def physical_path(obj):
    return "/".join(obj.getPhysicalPath())


def iso(dt):
    """Zope DateTime -> ISO 8601 string with offset (or None)."""
    return dt.ISO8601() if dt is not None else None


def resolve_uid(uid):
    """The object with that UID, or None."""
    from bika.lims import api
    if not uid:
        return None
    obj = api.get_object_by_uid(uid, None)
    if obj is None:
        # Created earlier in this transaction and maybe not indexed yet.
        from plone.app.uuid.utils import uuidToObject
        obj = uuidToObject(uid)
    return obj


def traverse_path(path):
    """The object at exactly this physical path, or None (no acquisition)."""
    from bika.lims import api
    portal = api.get_portal()
    if not path:
        return None
    obj = portal.unrestrictedTraverse(to_native(path), None)
    if obj is None or physical_path(obj) != path.rstrip("/"):
        return None
    return obj


def sync_state(obj):
    """The stored {applied_hash, modified} annotation (or an empty dict)."""
    from zope.annotation.interfaces import IAnnotations
    try:
        return IAnnotations(obj).get(ANNOTATION_KEY) or {}
    except TypeError:
        return {}


def store_sync_state(obj, load_hash, accepted=False):
    """Remember what was applied (or accepted) and the date it left."""
    from zope.annotation.interfaces import IAnnotations
    IAnnotations(obj)[ANNOTATION_KEY] = PersistentMapping({
        "applied_hash": load_hash, "modified": iso(obj.modified()),
        "accepted": bool(accepted)})


def lookup_uid(uid):
    """The sync/lookup answer for one uid."""
    from bika.lims import api
    obj = resolve_uid(uid)
    if obj is None:
        return {"uid": uid, "exists": False}
    state = sync_state(obj)
    modified = iso(obj.modified())
    return {
        "uid": uid, "exists": True, "path": physical_path(obj),
        "portal_type": api.get_portal_type(obj), "modified": modified,
        "review_state": api.get_review_status(obj),
        "applied_hash": state.get("applied_hash"),
        "changed_since_apply": bool(state) and state.get("modified") != modified,
        "accepted": bool(state.get("accepted")),
    }


def lookup_path(path):
    """The sync/lookup answer for one path."""
    from bika.lims import api
    obj = traverse_path(path)
    if obj is None:
        return {"path": path, "exists": False}
    return {"path": path, "exists": True, "uid": api.get_uid(obj),
            "portal_type": api.get_portal_type(obj)}


def is_dexterity(obj):
    from plone.dexterity.interfaces import IDexterityContent
    return IDexterityContent.providedBy(obj)


def set_uid(obj, uid):
    """Give obj the UID uid (AT or DX)."""
    from plone.uuid.interfaces import ATTRIBUTE_NAME
    from plone.uuid.interfaces import IUUID
    if IUUID(obj, None) == uid:
        return
    if is_dexterity(obj):
        setattr(obj, ATTRIBUTE_NAME, uid)
        recatalog_uid(obj)
    else:
        obj._setUID(uid)


def recatalog_uid(obj):
    """DX objects without the multi-catalog behavior are not reindexed in
    uid_catalog by reindexObject: refresh their entry there explicitly."""
    from Products.CMFCore.utils import getToolByName
    catalog = getToolByName(obj, "uid_catalog", None)
    path = physical_path(obj)
    if catalog is not None and catalog._catalog.uids.get(path) is not None:
        catalog.catalog_object(obj, path)


def container_of(record):
    """The record's container (by parent UID, else by parent path)."""
    container = resolve_uid(record.get("parent_uid")) \
        if record.get("parent_uid") not in (None, "", "0") else None
    if container is None or physical_path(container) != record.get("parent_path"):
        container = traverse_path(record.get("parent_path"))
    if container is None:
        raise RecordError("container {} not found".format(
            record.get("parent_path")))
    return container


def create_object(record):
    """Create the record's object in its container, with its id and UID."""
    from Products.CMFPlone.utils import _createObjectByType
    container = container_of(record)
    portal_type = to_native(record["portal_type"])
    oid = to_native(record["id"])
    guard_touch(container)
    if oid in container.objectIds():
        raise RecordError("id {} already taken in {} by another UID".format(
            oid, physical_path(container)))
    fti = container.portal_types.getTypeInfo(portal_type)
    if fti is None:
        raise RecordError("unknown portal_type {}".format(portal_type))
    if getattr(fti, "klass", None) and hasattr(fti, "behaviors"):
        obj = create_dexterity(container, portal_type, oid, record["uid"])
    else:
        obj = _createObjectByType(portal_type, container, oid)
        set_uid(obj, to_native(record["uid"]))
        if hasattr(obj, "unmarkCreationFlag"):
            obj.unmarkCreationFlag()
    return obj


def create_dexterity(container, portal_type, oid, uid):
    """DX factory + _setObject, the UID set before the object is added."""
    from plone.dexterity.utils import createContent
    from plone.uuid.interfaces import ATTRIBUTE_NAME
    obj = createContent(portal_type)
    obj.id = oid
    setattr(obj, ATTRIBUTE_NAME, to_native(uid))
    container._setObject(oid, obj)
    return container._getOb(oid)


def locate(record):
    """(obj, status) for the record: found, adopted or created."""
    from bika.lims import api
    uid = record["uid"]
    path = record["path"]
    obj = resolve_uid(uid)
    if obj is not None:
        if api.get_portal_type(obj) != record["portal_type"]:
            raise RecordError("uid is a {} in the destination".format(
                api.get_portal_type(obj)))
        if physical_path(obj) != path:
            return move_object(obj, record), "moved"
        return obj, "updated"
    existing = traverse_path(path)
    if existing is not None:
        if api.get_portal_type(existing) != record["portal_type"]:
            raise RecordError("path {} holds a {} with another UID".format(
                path, api.get_portal_type(existing)))
        set_uid(existing, to_native(uid))
        return existing, "updated"
    return create_object(record), "created"


def move_object(obj, record):
    """Move/rename obj in place to the record's container and id.

    What OFS's cut-and-paste does for a move, without its permission and
    clipboard checks (SENAITE denies "Delete objects" on most content): the
    object keeps its UID, history, dates and contents; the moved events
    unindex the old paths and index the new ones, descendants included.
    """
    from Acquisition import aq_base
    from Acquisition import aq_inner
    from Acquisition import aq_parent
    from OFS.event import ObjectWillBeMovedEvent
    from zope.container.contained import notifyContainerModified
    from zope.event import notify
    from zope.lifecycleevent import ObjectMovedEvent
    old_path = physical_path(obj)
    old_parent = aq_parent(aq_inner(obj))
    new_parent = container_of(record)
    old_id = obj.getId()
    new_id = to_native(record["id"])
    if new_id in new_parent.objectIds():
        raise RecordError("cannot move {} to {}/{}: the id is taken".format(
            old_path, physical_path(new_parent), new_id))
    if (physical_path(new_parent) + "/").startswith(old_path + "/"):
        raise RecordError("cannot move {} into itself".format(old_path))
    guard_touch(old_parent)
    guard_touch(new_parent)
    notify(ObjectWillBeMovedEvent(obj, old_parent, old_id, new_parent,
                                  new_id))
    old_parent._delObject(old_id, suppress_events=True)
    ob = aq_base(obj)
    ob._setId(new_id)
    new_parent._setObject(new_id, ob, set_owner=0, suppress_events=True)
    ob = new_parent._getOb(new_id)
    if hasattr(ob, "_postCopy"):
        ob._postCopy(new_parent, op=1)
    notify(ObjectMovedEvent(ob, old_parent, old_id, new_parent, new_id))
    notifyContainerModified(old_parent)
    if aq_base(old_parent) is not aq_base(new_parent):
        notifyContainerModified(new_parent)
    _local.moved_from = old_path
    return ob


def apply_record(record):
    """Apply one record; returns the answer item (raises RecordError)."""
    _local.moved_from = None
    obj, status = locate(record)
    moved_from = _local.moved_from
    if status == "moved":
        status = "updated"
    state = sync_state(obj)
    values = record.get("fields") or {}
    unknown = fieldio.unknown_fields(obj, values)
    if status == "updated" and state.get("applied_hash") == record.get(
            "load_hash") and state.get("modified") == iso(obj.modified()):
        return answer(record, obj, "unchanged", [], {}, unknown)
    blob_rows = record.get("blobs") or []
    if is_dexterity(obj):
        result = fieldio.dx_fields(obj, values, blob_rows, resolve_and_touch)
    else:
        result = fieldio.at_fields(obj, values, blob_rows, resolve_and_touch)
        restore_at_extras(obj, record)
        restore_partition(obj)
    workflow.restore(obj, record.get("workflow_history") or [],
                     record.get("workflow_states") or [])
    security.restore(obj, record, is_new=(status == "created"))
    restore_dates(obj, record)
    guard_set(obj)
    if result.deferred:
        status = "deferred"
    elif result.errors:
        status = "partial"
    else:
        store_sync_state(obj, record.get("load_hash"))
    item = answer(record, obj, status, result.deferred, result.errors,
                  unknown)
    item["moved_from"] = moved_from
    return item


def restore_at_extras(obj, record):
    """Values outside the schema that SENAITE derives once and keeps."""
    values = record.get("fields") or {}
    if record.get("portal_type") == "Client" and values.get("getGroupId"):
        # Client.group_id is computed lazily from ClientID on first use and
        # then stored; the source's value names the migrated client group.
        obj._client_group_id = to_native(values["getGroupId"])
        if not record.get("local_roles"):
            # The client group owns its client (Client.create_group); the
            # snapshot has no local roles to say so.
            obj.manage_setLocalRoles(obj._client_group_id, ["Owner"])


def restore_partition(obj):
    """A sample whose ParentAnalysisRequest is set is a partition.

    SENAITE 2.x's setter marks it (IAnalysisRequestPartition) and its primary
    (IAnalysisRequestWithPartitions), and create_partition reindexes the
    primary, whose catalog metadata (getDescendantsUIDs: the listings'
    partition rows) then names it; field.set, which we write with, does
    neither. The primary's modification date is kept.
    """
    schema = getattr(obj, "Schema", None)
    field = schema().get("ParentAnalysisRequest") if schema else None
    if field is None or "UIDReferenceField" not in fieldio.class_names(field):
        return
    parent = field.get(obj)
    if not parent:
        return
    from bika.lims.interfaces import IAnalysisRequestPartition
    from bika.lims.interfaces import IAnalysisRequestWithPartitions
    from zope.interface import alsoProvides
    alsoProvides(obj, IAnalysisRequestPartition)
    guard_touch(parent)
    alsoProvides(parent, IAnalysisRequestWithPartitions)
    catalog_refresh(parent, ["isRootAncestor"])


def restore_dates(obj, record):
    """Both dates first, then one full reindex that keeps them.

    A full ``reindexObject()`` calls ``notifyModified()`` (the date would
    become now); it is shadowed for that call by an instance attribute, so
    every catalog indexes the object once, with the record's dates. (Setting
    the date after a full reindex instead costs a second pass over every
    catalog's metadata, the most expensive part of indexing a sample.)
    """
    from DateTime import DateTime
    created = record.get("created")
    modified = record.get("modified")
    if created:
        if hasattr(obj, "setCreationDate"):
            obj.setCreationDate(DateTime(created))
        else:
            obj.creation_date = DateTime(created)
    if modified:
        if hasattr(obj, "setModificationDate"):
            obj.setModificationDate(DateTime(modified))
        else:
            obj.modification_date = DateTime(modified)
        reindex_keeping_dates(obj)
    else:
        obj.reindexObject()
    refresh_uid_catalog(obj)


def reindex_keeping_dates(obj):
    """A full reindex without the modification-date bump."""
    obj.notifyModified = _no_notify
    try:
        obj.reindexObject()
    finally:
        if "notifyModified" in obj.__dict__:
            del obj.notifyModified


def _no_notify(*args, **kwargs):
    return None


def answer(record, obj, status, deferred, errors, unknown):
    return {"uid": record["uid"], "status": status,
            "path": physical_path(obj), "modified": iso(obj.modified()),
            "deferred_fields": sorted(deferred),
            "field_errors": errors, "error": None, "moved_from": None,
            "unknown_fields": unknown}


# ------------------------------------------------------ removal, acceptance

# Review states of objects that are already deactivated.
INACTIVE_STATES = ("inactive", "deactivated")


def remove_object(item):
    """sync/remove for one {uid, policy}: deactivate (a real transition,
    so the history gets an entry by the loading user) or delete."""
    from bika.lims import api
    uid = item.get("uid")
    policy = item.get("policy")
    if policy not in ("deactivate", "delete"):
        raise RecordError("unknown policy {!r}".format(policy))
    obj = resolve_uid(uid)
    if obj is None:
        return {"uid": uid, "status": "absent", "path": None,
                "review_state": None, "error": None}
    path = physical_path(obj)
    if policy == "delete":
        parent = obj.aq_parent
        guard_touch(parent)
        parent._delObject(obj.getId())
        return {"uid": uid, "status": "deleted", "path": path,
                "review_state": None, "error": None}
    state = api.get_review_status(obj)
    if state in INACTIVE_STATES:
        return {"uid": uid, "status": "already_inactive", "path": path,
                "review_state": state, "error": None}
    wf_tool = api.get_tool("portal_workflow")
    transitions = [t["id"] for t in wf_tool.getTransitionsFor(obj)]
    if "deactivate" not in transitions:
        workflows = [w.getId() for w in wf_tool.getWorkflowsFor(obj)]
        return {"uid": uid, "status": "not_deactivatable", "path": path,
                "review_state": state,
                "error": "no deactivate transition from {} (workflows {}, "
                         "transitions {})".format(state, ", ".join(workflows),
                                                  ", ".join(transitions))}
    wf_tool.doActionFor(obj, "deactivate")
    obj.reindexObject()
    # Our own write: not a destination edit.
    store_sync_state(obj, "deactivated")
    return {"uid": uid, "status": "deactivated", "path": path,
            "review_state": api.get_review_status(obj), "error": None}


def accept_object(item):
    """sync/accept for one {uid, load_hash}: the destination's current
    version stands for that record from now on."""
    uid = item.get("uid")
    load_hash = item.get("load_hash")
    if not load_hash:
        raise RecordError("no load_hash")
    obj = resolve_uid(uid)
    if obj is None:
        return {"uid": uid, "status": "absent", "modified": None,
                "error": None}
    store_sync_state(obj, load_hash, accepted=True)
    return {"uid": uid, "status": "accepted",
            "modified": iso(obj.modified()), "error": None}
