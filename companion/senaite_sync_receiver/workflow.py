# -*- coding: utf-8 -*-
"""Restoring workflow history and state verbatim (no transitions run).

Like the original SENAITE.SYNC's ``setStatusOf``, but the whole history of
each workflow is replaced, with the original actors, comments, times and
extra variables, then role mappings are recomputed from the state.
"""
from DateTime import DateTime

from senaite_sync_receiver.compat import string_types
from senaite_sync_receiver.compat import to_native

# Extra keys added by plone.restapi's @history serializer, not stored by
# DCWorkflow.
RESTAPI_PREFIX = "restapi_"


def to_zope_datetime(value):
    """Snapshot time -> DateTime. Naive strings are UTC (servers run TZ=UTC)."""
    if not value:
        return DateTime()
    text = value
    tail = text[10:]
    if not (tail.endswith("Z") or "+" in tail or "-" in tail):
        text = text + "+00:00"
    return DateTime(text)


def history_entry(row, state_var):
    """One DCWorkflow history dict from a workflow_history row."""
    entry = {}
    extra = row.get("extra") or {}
    if isinstance(extra, string_types):
        import json
        extra = json.loads(extra)
    for key, value in extra.items():
        if key.startswith(RESTAPI_PREFIX):
            continue
        entry[to_native(key)] = native(value)
    entry["action"] = native(row.get("action"))
    entry["actor"] = native(row.get("actor"))
    entry["comments"] = native(row.get("comments") or "")
    entry[to_native(state_var)] = native(row.get("review_state"))
    entry["time"] = to_zope_datetime(row.get("time") or row.get("time_v1"))
    return entry


def native(value):
    if isinstance(value, string_types):
        return to_native(value)
    return value


def restore(obj, history_rows, state_rows):
    """Replace every workflow's history, then update role mappings."""
    from Products.CMFCore.utils import getToolByName
    wf_tool = getToolByName(obj, "portal_workflow")
    by_wf = {}
    for row in sorted(history_rows,
                      key=lambda r: (r.get("workflow"), r.get("seq") or 0)):
        by_wf.setdefault(row.get("workflow"), []).append(row)
    states = dict((row.get("workflow"), row.get("review_state"))
                  for row in state_rows)
    if not by_wf and not states:
        return
    history = {}
    for wf_id, rows in by_wf.items():
        wf = wf_tool.getWorkflowById(wf_id)
        state_var = getattr(wf, "state_var", "review_state")
        entries = [history_entry(row, state_var) for row in rows]
        current = states.get(wf_id)
        if current and entries and entries[-1].get(state_var) != current:
            entries.append(history_entry(
                {"action": None, "actor": "senaite-sync",
                 "comments": "state from workflow_states",
                 "review_state": current, "time": None}, state_var))
        history[to_native(wf_id)] = tuple(entries)
    # A state without history (a source that cannot read review history, such
    # as BIKA LIMS 3.1): one entry holding the state, so the state is kept.
    for wf_id, current in states.items():
        if wf_id in by_wf or not current:
            continue
        wf = wf_tool.getWorkflowById(wf_id)
        state_var = getattr(wf, "state_var", "review_state")
        history[to_native(wf_id)] = (history_entry(
            {"action": None, "actor": "senaite-sync",
             "comments": "state from workflow_states",
             "review_state": current, "time": None}, state_var),)
    if not hasattr(obj, "workflow_history") or obj.workflow_history is None:
        from persistent.mapping import PersistentMapping
        obj.workflow_history = PersistentMapping()
    for key in list(obj.workflow_history.keys()):
        if key not in history:
            del obj.workflow_history[key]
    for key, entries in history.items():
        obj.workflow_history[key] = entries
    for wf in wf_tool.getWorkflowsFor(obj):
        wf.updateRoleMappingsFor(obj)
