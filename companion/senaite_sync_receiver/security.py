# -*- coding: utf-8 -*-
"""Restoring creators, ownership and local roles of one object."""
from senaite_sync_receiver.compat import to_native


def restore(obj, record, is_new):
    """Creators, owner (first creator), local roles of listed principals."""
    fields = record.get("fields") or {}
    creators = [to_native(c) for c in fields.get("creators") or [] if c]
    if creators and hasattr(obj, "setCreators"):
        obj.setCreators(tuple(creators))
    loader = current_user_id()
    owner = creators[0] if creators else None
    if owner:
        set_owner(obj, owner)
    rows = record.get("local_roles") or []
    listed = set(to_native(r["principal"]) for r in rows)
    if is_new and loader and loader != owner and loader not in listed:
        # _createObjectByType gave the loading user Owner; the source did not.
        obj.manage_delLocalRoles([loader])
    if is_new and owner and owner not in listed:
        roles = set(dict(obj.get_local_roles()).get(owner, ()))
        obj.manage_setLocalRoles(owner, sorted(roles | set(["Owner"])))
    for row in rows:
        principal = to_native(row["principal"])
        roles = [to_native(r) for r in row.get("roles") or []]
        if roles:
            obj.manage_setLocalRoles(principal, roles)
        elif principal in dict(obj.get_local_roles()):
            obj.manage_delLocalRoles([principal])
    inherit = [r.get("inherit") for r in rows if r.get("inherit") is not None]
    if inherit:
        if inherit[0]:
            if getattr(obj, "__ac_local_roles_block__", None):
                obj.__ac_local_roles_block__ = None
        else:
            obj.__ac_local_roles_block__ = True


def current_user_id():
    from AccessControl import getSecurityManager
    return getSecurityManager().getUser().getId()


def set_owner(obj, userid):
    """changeOwnership to userid if such a user exists (site or Zope root)."""
    from Products.CMFCore.utils import getToolByName
    acl = getToolByName(obj, "acl_users")
    user = acl.getUserById(userid)
    if user is None:
        root_acl = obj.getPhysicalRoot().acl_users
        user = root_acl.getUserById(userid)
    if user is None:
        return
    if obj.getOwnerTuple() and obj.getOwnerTuple()[1] == userid:
        return
    obj.changeOwnership(user, recursive=False)
