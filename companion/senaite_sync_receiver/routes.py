# -*- coding: utf-8 -*-
"""The sync/* routes on senaite.jsonapi's v1 router (see PROTOCOL.md).

HTTP concerns only: authentication (Manager only), body size limits, the
transaction per request with a savepoint per record, and ConflictError
retries. The work itself is in records, principals, blobs and idcounters.
"""
import json
import os

import transaction
from senaite.jsonapi import api as japi
from senaite.jsonapi import request as req
from senaite.jsonapi.v1 import add_route
from ZODB.POSException import ConflictError

from senaite_sync_receiver import NAME
from senaite_sync_receiver import PROTOCOL
from senaite_sync_receiver import VERSION
from senaite_sync_receiver import blobs
from senaite_sync_receiver import logger

MAX_REQUEST_BYTES = int(os.environ.get("SENAITE_SYNC_MAX_REQUEST_BYTES",
                                       32 * 1024 * 1024))
MAX_BATCH = 200
MAX_CHUNK_BYTES = 8 * 1024 * 1024
CONFLICT_RETRIES = 3


def portal():
    from bika.lims import api
    return api.get_portal()


def current_user():
    from AccessControl import getSecurityManager
    return getSecurityManager().getUser()


def require_manager():
    """401 unless the caller has the Manager role on the site."""
    user = current_user()
    if user is None or japi.is_anonymous() or \
            not user.has_role("Manager", portal()):
        japi.fail(401, "Only a Manager may call sync routes")


def content_length(request):
    try:
        return int(request.get_header("Content-Length") or
                   request.environ.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        return 0


def read_json(request):
    """The JSON object body; 413 when too large, 400 when not an object."""
    if content_length(request) > MAX_REQUEST_BYTES:
        japi.fail(413, "Request body larger than max_request_bytes={}"
                  .format(MAX_REQUEST_BYTES))
    body = request.get("BODY") or "{}"
    if len(body) > MAX_REQUEST_BYTES:
        japi.fail(413, "Request body larger than max_request_bytes={}"
                  .format(MAX_REQUEST_BYTES))
    try:
        data = json.loads(body)
    except ValueError as exc:
        japi.fail(400, "Body is not valid JSON: {}".format(exc))
    if not isinstance(data, dict):
        japi.fail(400, "Body must be a JSON object")
    return data


def list_arg(data, key):
    value = data.get(key) or []
    if not isinstance(value, list):
        japi.fail(400, "'{}' must be a list".format(key))
    if len(value) > MAX_BATCH:
        japi.fail(413, "At most max_batch={} '{}' per request"
                  .format(MAX_BATCH, key))
    return value


def with_conflict_retry(work):
    """Run work() and commit; retry the whole batch on ConflictError."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            result = work()
            transaction.commit()
            return result
        except ConflictError:
            transaction.abort()
            logger.warn("sync: ConflictError, retrying batch (%d)",
                        attempt + 1)
    japi.fail(503, "ConflictError persisted after {} attempts"
              .format(CONFLICT_RETRIES))


# ---------------------------------------------------------------- routes

@add_route("/sync/info", "senaite_sync_receiver.info", methods=["GET"])
def info(context, request):
    require_manager()
    site = portal()
    types = sorted(site.portal_types.objectIds())
    return {"name": NAME, "version": VERSION, "protocol": PROTOCOL,
            "site_id": site.getId(),
            "site_path": "/".join(site.getPhysicalPath()),
            "portal_types": types, "max_request_bytes": MAX_REQUEST_BYTES,
            "max_batch": MAX_BATCH, "max_chunk_bytes": MAX_CHUNK_BYTES,
            "user": current_user().getId()}


@add_route("/sync/lookup", "senaite_sync_receiver.lookup", methods=["POST"])
def lookup(context, request):
    from senaite_sync_receiver import records
    req.disable_csrf_protection()
    require_manager()
    data = read_json(request)
    uids = [records.lookup_uid(u) for u in list_arg(data, "uids")]
    paths = [records.lookup_path(p) for p in list_arg(data, "paths")]
    return {"uids": uids, "paths": paths}


@add_route("/sync/apply", "senaite_sync_receiver.apply", methods=["POST"])
def apply(context, request):
    req.disable_csrf_protection()
    require_manager()
    data = read_json(request)
    batch = list_arg(data, "records")
    return with_conflict_retry(lambda: {"items": apply_batch(batch)})


def apply_batch(batch):
    """One savepoint per record; the index queue is flushed before each
    savepoint and dropped on rollback, so a rolled-back record leaves no
    catalog entries behind."""
    from Products.CMFCore.indexing import getQueue
    from Products.CMFCore.indexing import processQueue
    from senaite_sync_receiver import records
    items = []
    parents = {}
    records.guard_reset()
    for record in batch:
        processQueue()
        savepoint = transaction.savepoint()
        guarded = records.guard_snapshot()
        try:
            check_record(record)
            item = records.apply_record(record)
            if item["status"] != "unchanged":
                obj = records.traverse_path(item["path"])
                parent = obj.aq_parent if obj is not None else None
                if parent is not None and hasattr(parent, "reindexObject"):
                    parents[records.physical_path(parent)] = parent
            processQueue()
        except ConflictError:
            raise
        except Exception as exc:  # noqa: B902 - reported per record
            getQueue().clear()
            savepoint.rollback()
            records.guard_restore(guarded)
            if not isinstance(exc, records.RecordError):
                logger.exception("sync/apply: record %s failed",
                                 getattr(record, "get", lambda k: None)("uid"))
            item = failed_item(record, exc)
        items.append(item)
    records.guard_finish(parents)
    processQueue()
    return items


def check_record(record):
    from senaite_sync_receiver.records import RecordError
    if not isinstance(record, dict):
        raise RecordError("record is not an object")
    for key in ("uid", "portal_type", "path", "id"):
        if not record.get(key):
            raise RecordError("record has no '{}'".format(key))
    if not isinstance(record.get("fields") or {}, dict):
        raise RecordError("'fields' is not an object")


def failed_item(record, exc):
    uid = record.get("uid") if isinstance(record, dict) else None
    path = record.get("path") if isinstance(record, dict) else None
    return {"uid": uid, "status": "failed", "path": path, "modified": None,
            "deferred_fields": [], "field_errors": {}, "moved_from": None,
            "error": "{}: {}".format(type(exc).__name__, exc)}


@add_route("/sync/remove", "senaite_sync_receiver.remove", methods=["POST"])
def remove(context, request):
    """Deactivate or delete objects by UID (a delta's deletions)."""
    from senaite_sync_receiver import records
    req.disable_csrf_protection()
    require_manager()
    items = list_arg(read_json(request), "items")
    return with_conflict_retry(
        lambda: {"items": per_item(items, records.remove_object)})


@add_route("/sync/accept", "senaite_sync_receiver.accept", methods=["POST"])
def accept(context, request):
    """Record that the destination's version of objects stands for the
    given records (a conflict resolved destination-wins)."""
    from senaite_sync_receiver import records
    req.disable_csrf_protection()
    require_manager()
    items = list_arg(read_json(request), "items")
    return with_conflict_retry(
        lambda: {"items": per_item(items, records.accept_object)})


def per_item(items, work):
    """work(item) for each item under its own savepoint; a failing item is
    rolled back and answered "failed" with the reason."""
    from Products.CMFCore.indexing import getQueue
    from Products.CMFCore.indexing import processQueue
    from senaite_sync_receiver import records
    out = []
    records.guard_reset()
    for item in items:
        processQueue()
        savepoint = transaction.savepoint()
        guarded = records.guard_snapshot()
        try:
            if not isinstance(item, dict) or not item.get("uid"):
                raise records.RecordError("item has no 'uid'")
            out.append(work(item))
            processQueue()
        except ConflictError:
            raise
        except Exception as exc:  # noqa: B902 - reported per item
            getQueue().clear()
            savepoint.rollback()
            records.guard_restore(guarded)
            if not isinstance(exc, records.RecordError):
                logger.exception("sync: item %s failed",
                                 getattr(item, "get", lambda k: None)("uid"))
            uid = item.get("uid") if isinstance(item, dict) else None
            out.append({"uid": uid, "status": "failed",
                        "error": "{}: {}".format(type(exc).__name__, exc)})
    records.guard_finish({})
    processQueue()
    return out


@add_route("/sync/blob/<string:sha>", "senaite_sync_receiver.blob",
           methods=["GET", "POST"])
def blob(context, request, sha=None):
    req.disable_csrf_protection()
    require_manager()
    try:
        if request.get("REQUEST_METHOD", "GET") == "GET":
            return blobs.status(sha)
        return write_blob_chunk(request, sha)
    except blobs.BlobError as exc:
        japi.fail(exc.status, str(exc))


def write_blob_chunk(request, sha):
    try:
        offset = int(request.get_header("X-Sync-Offset"))
        size = int(request.get_header("X-Sync-Size"))
    except (TypeError, ValueError):
        raise blobs.BlobError(400, "X-Sync-Offset and X-Sync-Size required")
    length = content_length(request)
    if length > MAX_CHUNK_BYTES:
        raise blobs.BlobError(413, "Chunk larger than max_chunk_bytes={}"
                              .format(MAX_CHUNK_BYTES))
    stream = request.stdin
    stream.seek(0)
    return blobs.write_chunk(sha, offset, size, stream, length,
                             MAX_CHUNK_BYTES)


@add_route("/sync/principals", "senaite_sync_receiver.principals",
           methods=["POST"])
def principals(context, request):
    from senaite_sync_receiver.principals import apply_principals
    req.disable_csrf_protection()
    require_manager()
    data = read_json(request)
    groups = data.get("groups") or []
    users = data.get("users") or []
    if not isinstance(groups, list) or not isinstance(users, list):
        japi.fail(400, "'users' and 'groups' must be lists")
    return with_conflict_retry(
        lambda: {"items": apply_principals(portal(), groups, users)})


@add_route("/sync/finalize", "senaite_sync_receiver.finalize",
           methods=["POST"])
def finalize(context, request):
    from senaite_sync_receiver.idcounters import advance_counters
    req.disable_csrf_protection()
    require_manager()
    read_json(request)
    return with_conflict_retry(lambda: {"counters": advance_counters(portal())})
