# -*- coding: utf-8 -*-
"""Writing snapshot field values into Archetypes and Dexterity objects.

Values arrive in senaite.jsonapi's v1 read format (plus plone.restapi
fill-ins): references as ``{"uid": ...}`` dicts or lists of them, dates as ISO
strings, files as info dicts whose bytes were staged through ``sync/blob``.
Fields are written with the *field's* own setter (``field.set``), not the
content class' mutator, so that SENAITE's business logic (result capture
dates, analyses creation, remarks events...) does not run: we restore stored
values, we do not re-enact edits.

This module never commits and never touches the workflow.
"""
import datetime
import math

from senaite_sync_receiver import blobs
from senaite_sync_receiver.compat import string_types
from senaite_sync_receiver.compat import text_type
from senaite_sync_receiver.compat import to_native

# Never written from the record: identity is handled on creation, the others
# are UI settings the original SENAITE.SYNC skipped as well.
SKIP_FIELDS = frozenset([
    "id", "excludeFromNav", "constrainTypesMode", "allowDiscussion",
    "locallyAllowedTypes", "immediatelyAddableTypes",
    # ExtensibleMetadata dates: set by the record's created/modified step.
    "creation_date", "modification_date",
])

# AT field classes whose set() has side effects we must not trigger; they
# are either derived from other records (analyses are their own records) or
# written raw below.
SKIP_AT_CLASSES = frozenset(["ARAnalysesField", "ComputedField"])
AT_REFERENCE_CLASSES = frozenset([
    "ReferenceField", "UIDReferenceField", "HistoryAwareReferenceField"])
AT_FILE_TYPES = frozenset(["file", "image", "blob"])


class Deferred(Exception):
    """A reference target does not exist yet."""


class FieldResult(object):
    """Outcome of writing the fields of one record."""

    def __init__(self):
        self.deferred = []
        self.errors = {}


def class_names(field):
    """Names of the field's class and its bases."""
    return set(k.__name__ for k in type(field).__mro__)


def restore_nonfinite(value):
    """Turn {"$nonfinite": "NaN"} markers back into floats, recursively."""
    if isinstance(value, dict):
        if len(value) == 1 and "$nonfinite" in value:
            return float(value["$nonfinite"].replace("Infinity", "inf"))
        return dict((k, restore_nonfinite(v)) for k, v in value.items())
    if isinstance(value, list):
        return [restore_nonfinite(v) for v in value]
    return value


def reference_uids(value):
    """UIDs named by a reference value ({uid}, [{uid}], "uid", [uid])."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    uids = []
    for item in items:
        if isinstance(item, dict):
            uid = item.get("uid")
        else:
            uid = item
        if uid and isinstance(uid, string_types):
            uids.append(to_native(uid))
    return uids


def ensure_targets(uids, resolve_uid):
    """Raise Deferred when a referenced uid does not exist (yet)."""
    missing = [uid for uid in uids if resolve_uid(uid) is None]
    if missing:
        raise Deferred(", ".join(missing))


def to_datetime(value):
    """ISO string -> Zope DateTime (None stays None)."""
    from DateTime import DateTime
    if not value:
        return None
    return DateTime(value)


def staged_blob(blob_rows, name):
    """(path, row) of the staged blob of field name, or raise ValueError."""
    for row in blob_rows or []:
        if row.get("field") == name:
            path = blobs.complete_path(row.get("sha256"))
            if not path:
                raise ValueError("blob {} not uploaded".format(row.get("sha256")))
            return path, row
    return None, None


def empty_value_for(field, default):
    """The value to store for a v1 null: v1 renders every falsy value as
    null, so write the field's falsy default, else the type's empty value."""
    if not default:
        return default
    if isinstance(default, bool):
        return False
    if isinstance(default, (int, float)):
        return type(default)(0)
    if isinstance(default, string_types):
        return type(default)()
    if isinstance(default, (list, tuple)):
        return type(default)()
    return None


# ---------------------------------------------------------------- Archetypes

def at_fields(obj, fields, blob_rows, resolve_uid):
    """Write every AT schema field present in fields; proxies last."""
    result = FieldResult()
    schema = obj.Schema()
    ordered, proxies = [], []
    for name in sorted(fields):
        field = schema.get(name)
        if field is None or name in SKIP_FIELDS:
            continue
        names = class_names(field)
        if names & SKIP_AT_CLASSES or getattr(field, "mode", "rw") == "r":
            continue
        if "ProxyField" in names:
            proxies.append(field)
        else:
            ordered.append(field)
    for field in ordered + proxies:
        name = field.getName()
        try:
            set_at_field(obj, field, fields[name], blob_rows, resolve_uid)
        except Deferred:
            result.deferred.append(name)
        except Exception as exc:  # noqa: B902 - reported per field
            result.errors[name] = "{}: {}".format(type(exc).__name__, exc)
    return result


def set_at_field(obj, field, value, blob_rows, resolve_uid):
    """Convert one v1 value and store it with field.set."""
    from Products.Archetypes.Field import ObjectField
    names = class_names(field)
    name = field.getName()
    value = restore_nonfinite(value)
    if names & AT_REFERENCE_CLASSES:
        uids = reference_uids(value)
        ensure_targets(uids, resolve_uid)
        if getattr(field, "multiValued", False):
            field.set(obj, uids)
        else:
            field.set(obj, uids[0] if uids else None)
        return
    if "TextField" not in names and (field.type in AT_FILE_TYPES or
                                     "BlobField" in names or
                                     "FileField" in names):
        set_at_file(obj, field, value, blob_rows)
        return
    if "RemarksField" in names:
        from bika.lims.browser.fields.remarksfield import RemarksHistory
        from bika.lims.browser.fields.remarksfield import \
            RemarksHistoryRecord
        records = [RemarksHistoryRecord(native_dict(item))
                   for item in value or []]
        ObjectField.set(field, obj, RemarksHistory(records))
        return
    if field.type == "datetime":
        field.set(obj, to_datetime(value))
        return
    if value is None:
        value = empty_value_for(field, field.getDefault(obj))
    if names & set(["StringField", "TextField"]) and \
            isinstance(value, (dict, list)):
        raise ValueError("a {} cannot hold a {}".format(
            type(field).__name__, type(value).__name__))
    if "TextField" in names:
        # Without a mimetype AT guesses text/plain and converts to HTML;
        # v1 gives the stored raw text, stored in the field's own type.
        field.set(obj, native_value(value) or "", mimetype=getattr(
            field, "default_content_type", None) or "text/plain")
        return
    field.set(obj, native_value(value))


def set_at_file(obj, field, value, blob_rows):
    """Set a file field from its staged blob, streamed from disk."""
    name = field.getName()
    path, row = staged_blob(blob_rows, name)
    if path is None:
        if not value:
            field.set(obj, "")
            return
        raise ValueError("no blob row for file field {}".format(name))
    filename = to_native(row.get("filename") or "")
    mimetype = to_native(row.get("content_type") or
                         "application/octet-stream")
    with open(path, "rb") as handle:
        field.set(obj, handle, filename=filename, mimetype=mimetype)
    # Some AT storages read the name from the file object: set it again.
    if filename and hasattr(field, "setFilename"):
        field.setFilename(obj, filename)
    if hasattr(field, "setContentType"):
        field.setContentType(obj, mimetype)


def native_dict(item):
    """A dict with native str keys and values (AT stores native strings)."""
    return dict((to_native(k), native_value(v)) for k, v in item.items())


def native_value(value):
    """Recursively convert unicode to native str (utf-8) for AT storage."""
    if isinstance(value, text_type):
        return to_native(value)
    if isinstance(value, list):
        return [native_value(v) for v in value]
    if isinstance(value, dict):
        return native_dict(value)
    return value


# ---------------------------------------------------------------- Dexterity

def dx_fields(obj, fields, blob_rows, resolve_uid):
    """Write every Dexterity schema field (incl. behaviors) present."""
    from plone.dexterity.utils import iterSchemata
    from zope.schema import getFieldsInOrder
    result = FieldResult()
    seen = set()
    for schema in iterSchemata(obj):
        for name, field in getFieldsInOrder(schema):
            if name in seen or name in SKIP_FIELDS or name not in fields:
                continue
            seen.add(name)
            if field.readonly:
                continue
            if fields[name] is None and is_unset(obj, name):
                # v1 null and never stored here: leave it unset, as the
                # source has it (set(None) stores [] for UID references).
                continue
            try:
                adapted = schema(obj)
                value = dx_value(obj, field, fields[name], blob_rows,
                                 resolve_uid)
                field.bind(adapted).set(adapted, value)
            except Deferred:
                result.deferred.append(name)
            except Exception as exc:  # noqa: B902 - reported per field
                result.errors[name] = "{}: {}".format(type(exc).__name__, exc)
    return result


def is_unset(obj, name):
    """True when the attribute was never stored on the object itself."""
    from Acquisition import aq_base
    return name not in getattr(aq_base(obj), "__dict__", {})


def dx_value(obj, field, value, blob_rows, resolve_uid):
    """Convert one JSON value to what the zope.schema field stores."""
    names = class_names(field)
    value = restore_nonfinite(value)
    if "UIDReferenceField" in names:
        if value is None:
            return None
        uids = reference_uids(value)
        ensure_targets(uids, resolve_uid)
        return uids
    if names & set(["RelationChoice", "RelationList"]):
        return dx_relations(field, value, resolve_uid)
    if names & set(["NamedBlobFile", "NamedBlobImage", "NamedFile",
                    "NamedImage"]):
        return dx_file(field, names, value, blob_rows)
    if "RichText" in names:
        return dx_richtext(field, value)
    if "Timedelta" in names:
        return to_timedelta(value, field)
    if "Datetime" in names:
        return to_py_datetime(value)
    if "Date" in names:
        parsed = to_py_datetime(value)
        return parsed.date() if parsed else None
    if value is None:
        return empty_value_for(field, field.default)
    if "Tuple" in names and isinstance(value, list):
        return tuple(value)
    if "Set" in names and isinstance(value, list):
        return set(value)
    if names & set(["ASCIILine", "ASCII", "BytesLine", "Bytes"]):
        return to_native(value)
    return value


def to_timedelta(value, field):
    """Seconds (plone.restapi) or {days,hours,minutes} (v1) -> timedelta."""
    if value is None:
        return field.default
    if isinstance(value, dict):
        return datetime.timedelta(
            days=int(value.get("days") or 0),
            hours=int(value.get("hours") or 0),
            minutes=int(value.get("minutes") or 0),
            seconds=int(value.get("seconds") or 0))
    if isinstance(value, float) and math.isnan(value):
        return field.default
    return datetime.timedelta(seconds=float(value))


def to_py_datetime(value):
    """ISO string -> timezone aware datetime (naive strings are UTC)."""
    if not value:
        return None
    from DateTime import DateTime
    if isinstance(value, string_types) and "+" not in value[10:] \
            and not value.endswith("Z") and "-" not in value[10:]:
        value = value + "+00:00"
    return DateTime(value).asdatetime()


def dx_richtext(field, value):
    """plone.restapi {data, content-type, encoding} or a string -> value."""
    from plone.app.textfield.value import RichTextValue
    if value is None:
        return None
    if isinstance(value, dict):
        return RichTextValue(
            raw=value.get("data") or u"",
            mimeType=value.get("content-type") or field.default_mime_type,
            outputMimeType=field.output_mime_type,
            encoding=value.get("encoding") or "utf-8")
    return RichTextValue(raw=value, mimeType=field.default_mime_type,
                         outputMimeType=field.output_mime_type)


def dx_file(field, names, value, blob_rows):
    """A plone.namedfile value built from the staged blob, or None."""
    from plone.namedfile import file as namedfile
    path, row = staged_blob(blob_rows, field.__name__)
    if path is None:
        if value:
            raise ValueError("no blob row for file field {}"
                             .format(field.__name__))
        return None
    klass = "NamedBlobFile"
    for candidate in ("NamedBlobImage", "NamedBlobFile", "NamedImage",
                      "NamedFile"):
        if candidate in names:
            klass = candidate
            break
    factory = getattr(namedfile, klass)
    filename = row.get("filename") or u""
    if not isinstance(filename, text_type):
        filename = filename.decode("utf-8")
    with open(path, "rb") as handle:
        if klass.startswith("NamedBlob"):
            # FileDescriptorStorage copies the open file into the blob.
            return factory(data=handle, filename=filename,
                           contentType=to_native(row.get("content_type")
                                                 or ""))
        return factory(data=handle.read(), filename=filename,
                       contentType=to_native(row.get("content_type") or ""))


def dx_relations(field, value, resolve_uid):
    """UIDs -> z3c.relationfield RelationValue(s)."""
    from z3c.relationfield import RelationValue
    from zope.component import getUtility
    from zope.intid.interfaces import IIntIds
    intids = getUtility(IIntIds)
    uids = reference_uids(value)
    ensure_targets(uids, resolve_uid)
    rels = [RelationValue(intids.getId(resolve_uid(uid))) for uid in uids]
    if "RelationList" in class_names(field):
        return rels
    return rels[0] if rels else None


# ------------------------------------------------------ keys with no place

# Record keys that are no schema field and no loss either: senaite.jsonapi's
# identity, URL, parent and workflow keys (get_info, 1.x and 2.x), the data
# providers' mapped attributes and computed keys, plone.restapi keys the
# extractor keeps where senaite.jsonapi has none, and keys other steps of
# apply restore (creators: ownership; getGroupId: a client's group). The
# SKIP_FIELDS above are never written on purpose (identity, UI settings).
NON_FIELD_KEYS = frozenset([
    "uid", "url", "api_url", "id", "title", "description", "created",
    "modified", "effective", "expires", "portal_type", "tags", "author",
    "path", "parent_path", "parent_id", "parent_uid", "parent_url",
    "workflow_info", "review_state", "transitions", "version", "items",
    "children", "getFormattedResult", "isRetest", "creation_date",
    "modification_date", "creators", "getGroupId", "is_folderish",
    "working_copy", "working_copy_of", "targetUrl",
])

# Known keys per portal type (schema fields of the first object seen, the
# catalogs' columns and indexes, the data providers' keys): computed once per
# process; a key outside it is checked against the object's own schema too.
_known_keys = {}


def has_value(value):
    """Whether a record value holds something (not null, "", [] or {})."""
    if value is None:
        return False
    if isinstance(value, (string_types, list, tuple, dict)):
        return len(value) > 0
    return True


def unknown_fields(obj, values):
    """Sorted keys of values holding a value that this destination has no
    place for: nothing of them is written (PROTOCOL.md, unknown_fields)."""
    from bika.lims import api
    portal_type = api.get_portal_type(obj)
    known = _known_keys.get(portal_type)
    if known is None:
        known = _known_keys[portal_type] = frozenset(
            NON_FIELD_KEYS | SKIP_FIELDS | schema_names(obj) |
            catalog_names() | info_keys(obj))
    own = None
    out = []
    for key, value in values.items():
        if key in known or not has_value(value):
            continue
        if own is None:
            own = schema_names(obj)
        if key not in own:
            out.append(key)
    return sorted(out)


def schema_names(obj):
    """Every schema field name of obj (AT schema; DX schemata and
    behaviors), read-only and computed fields included."""
    names = set()
    if hasattr(obj, "Schema") and not is_dexterity_obj(obj):
        names.update(obj.Schema().keys())
        return names
    from plone.dexterity.utils import iterSchemata
    from zope.schema import getFieldNames
    for schema in iterSchemata(obj):
        names.update(getFieldNames(schema))
    return names


def is_dexterity_obj(obj):
    from plone.dexterity.interfaces import IDexterityContent
    return IDexterityContent.providedBy(obj)


def catalog_names():
    """Metadata columns and index names of every catalog of the site (what
    a catalog holds is derived from the objects, never stored data)."""
    from bika.lims import api
    from Products.ZCatalog.interfaces import IZCatalog
    names = set()
    for ob in api.get_portal().objectValues():
        if IZCatalog.providedBy(ob):
            names.update(ob.schema())
            names.update(ob.indexes())
    return names


def info_keys(obj):
    """The keys senaite.jsonapi's data providers give for obj."""
    names = set()
    try:
        from senaite.jsonapi.interfaces import IInfo
        from zope.component import getAdapters
        adapters = [a for _, a in getAdapters((obj,), IInfo)]
    except Exception:  # noqa: B902 - an older senaite.jsonapi: no extra keys
        return names
    for adapter in adapters:
        names.update(getattr(adapter, "keys", None) or [])
        names.update(getattr(adapter, "attributes", None) or {})
    return names
