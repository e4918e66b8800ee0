# -*- coding: utf-8 -*-
"""sync/principals: groups (roles, properties) then users (roles,
properties, memberships). Users created here get a random password."""
import binascii
import os

from DateTime import DateTime
from Products.CMFCore.utils import getToolByName

from senaite_sync_receiver.compat import to_native

VIRTUAL_ROLES = frozenset(["Authenticated", "Anonymous"])
VIRTUAL_GROUPS = frozenset(["AuthenticatedUsers"])
DATE_PROPERTIES = frozenset(["login_time", "last_login_time"])
# Never written: bookkeeping of the source's own logins.
SKIP_PROPERTIES = frozenset(["error_log_update"])


def random_password():
    return binascii.hexlify(os.urandom(24)).decode("ascii")


def real_roles(roles):
    return sorted(set(to_native(r) for r in roles or []) - VIRTUAL_ROLES)


def apply_principals(portal, groups, users):
    items = []
    for row in groups:
        items.append(run(apply_group, portal, row, "group", row.get("id")))
    for row in users:
        items.append(run(apply_user, portal, row, "user", row.get("username")))
    for row in groups:
        nest_groups(portal, row)
    return items


def run(func, portal, row, kind, pid):
    import transaction
    from ZODB.POSException import ConflictError
    savepoint = transaction.savepoint()
    try:
        status, reset = func(portal, row)
        return {"kind": kind, "id": pid, "status": status,
                "needs_password_reset": reset, "error": None}
    except ConflictError:
        raise
    except Exception as exc:  # noqa: B902 - reported per principal
        savepoint.rollback()
        return {"kind": kind, "id": pid, "status": "failed",
                "needs_password_reset": False,
                "error": "{}: {}".format(type(exc).__name__, exc)}


def apply_group(portal, row):
    gtool = getToolByName(portal, "portal_groups")
    gid = to_native(row["id"])
    if gid in VIRTUAL_GROUPS:
        return "unchanged", False
    roles = real_roles(row.get("roles"))
    props = {"title": to_native(row.get("title") or ""),
             "description": to_native(row.get("description") or ""),
             "email": to_native(row.get("email") or "")}
    group = gtool.getGroupById(gid)
    if group is None:
        gtool.addGroup(gid, roles=roles, title=props["title"],
                       description=props["description"])
        group = gtool.getGroupById(gid)
        group.setGroupProperties(props)
        return "created", False
    changed = real_roles(group.getRoles()) != roles
    for key, value in props.items():
        if (group.getProperty(key) or "") != value:
            changed = True
    if not changed:
        return "unchanged", False
    gtool.setRolesForGroup(gid, roles)
    group.setGroupProperties(props)
    return "updated", False


def nest_groups(portal, row):
    """Group members that are groups (users got theirs in apply_user)."""
    gtool = getToolByName(portal, "portal_groups")
    gid = to_native(row["id"])
    if gtool.getGroupById(gid) is None:
        return
    for member in row.get("members") or []:
        member = to_native(member)
        if gtool.getGroupById(member) is not None and member != gid:
            if member not in gtool.getGroupMembers(gid):
                gtool.addPrincipalToGroup(member, gid)


def apply_user(portal, row):
    acl = getToolByName(portal, "acl_users")
    mtool = getToolByName(portal, "portal_membership")
    uid = to_native(row["username"])
    created = False
    if mtool.getMemberById(uid) is None:
        # Through PAS directly: portal_registration would insist on an
        # e-mail address, which source users need not have.
        acl._doAddUser(uid, random_password(), [], [])
        created = True
    member = mtool.getMemberById(uid)
    changed = []
    if set_user_roles(acl, member, real_roles(row.get("roles"))):
        changed.append("roles")
    if set_user_groups(portal, uid, row.get("groups") or []):
        changed.append("groups")
    if set_user_properties(member, row):
        changed.append("properties")
    if changed:
        from senaite_sync_receiver import logger
        logger.info("sync/principals: user %s: %s changed", uid, changed)
    if created:
        return "created", True
    return ("updated" if changed else "unchanged"), False


def set_user_roles(acl, member, roles):
    # member.getRoles() includes roles from groups; compare direct ones.
    prm = acl.portal_role_manager
    direct = real_roles(prm._principal_roles.get(member.getId(), ()))
    if direct == roles:
        return False
    # PlonePAS' signature is (roles, principal_id), unlike ZODBRoleManager.
    prm.assignRolesToPrincipal(roles, member.getId())
    return True


def set_user_groups(portal, uid, groups):
    gtool = getToolByName(portal, "portal_groups")
    wanted = set(to_native(g) for g in groups) - VIRTUAL_GROUPS
    wanted = set(g for g in wanted if gtool.getGroupById(g) is not None)
    current = set(gtool.getGroupsForPrincipal(
        getToolByName(portal, "acl_users").getUserById(uid))) - VIRTUAL_GROUPS
    changed = False
    for gid in wanted - current:
        gtool.addPrincipalToGroup(uid, gid)
        changed = True
    for gid in current - wanted:
        gtool.removePrincipalFromGroup(uid, gid)
        changed = True
    return changed


def set_user_properties(member, row):
    props = dict(row.get("properties") or {})
    props["fullname"] = row.get("fullname") or ""
    props["email"] = row.get("email") or ""
    wanted = {}
    for key, value in props.items():
        key = to_native(key)
        if key in SKIP_PROPERTIES or not member.hasProperty(key):
            continue
        if key in DATE_PROPERTIES and value:
            value = DateTime(value if "+" in value[10:] else value + "+00:00")
        elif isinstance(value, (list, tuple)):
            value = tuple(to_native(v) for v in value)
        else:
            value = to_native(value) if value is not None else ""
        if member.getProperty(key) != value:
            wanted[key] = value
    if wanted:
        member.setMemberProperties(wanted)
    return bool(wanted)
