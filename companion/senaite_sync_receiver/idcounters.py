# -*- coding: utf-8 -*-
"""sync/finalize: advance the ID server's counters past migrated ids.

For every object whose type has a "generated" ID format (the configured one
or SENAITE's default ``<type>-{seq}``), the id is matched against the format;
the matched prefix gives the number generator key exactly as
``senaite.core.idserver.get_generated_number`` builds it, and the highest
sequence number per key becomes the counter (never lowered).
"""
import re

FIELD_RE = re.compile(r"(\{[^}]*\})")


def template_regex(template, prefix_template):
    """A regex for ids built from template; groups 'prefix' and 'seq'."""
    def convert(part):
        out = []
        for piece in FIELD_RE.split(part):
            if not piece:
                continue
            if piece.startswith("{seq"):
                out.append(r"(?P<seq>\d+)")
            elif piece.startswith("{alpha"):
                out.append(r"(?P<alpha>[A-Za-z0-9]+)")
            elif piece.startswith("{"):
                out.append(r".+?")
            else:
                out.append(re.escape(piece))
        return "".join(out)
    if not template.startswith(prefix_template):
        return None
    rest = template[len(prefix_template):]
    return re.compile("^(?P<prefix>" + convert(prefix_template) + ")" +
                      convert(rest) + "$")


def walk(container):
    """Every content object below container (depth first)."""
    stack = [container]
    while stack:
        parent = stack.pop()
        values = getattr(parent, "objectValues", None)
        if values is None:
            continue
        for child in values():
            if getattr(child, "portal_type", None) in (None, "Reference"):
                continue
            yield child
            if getattr(child, "isPrincipiaFolderish", False):
                stack.append(child)


def highest_sequences(portal):
    """{storage key: highest sequence number} over the whole site."""
    from bika.lims import api
    from senaite.core.idserver import idserver
    configs = {}
    highest = {}
    for obj in walk(portal):
        if not api.is_object(obj) or api.is_portal(obj):
            continue
        try:
            type_id = idserver.get_type_id(obj)
        except Exception:  # noqa: B902 - objects without an id config
            continue
        if type_id not in configs:
            configs[type_id] = compile_config(idserver.get_config(
                obj, portal_type=type_id))
        compiled = configs[type_id]
        if compiled is None:
            continue
        regex, template = compiled
        match = regex.match(obj.getId())
        if not match:
            continue
        number = sequence_number(match, template)
        if number is None:
            continue
        prefix = api.normalize_filename(match.group("prefix"))
        key = idserver.make_storage_key(type_id, prefix)
        highest[key] = max(highest.get(key, 0), number)
    return highest


def compile_config(config):
    from senaite.core.idserver import idserver
    if config.get("sequence_type", "generated") != "generated":
        return None
    template = config.get("form", "")
    split_length = config.get("split_length", 1)
    try:
        prefix_template = idserver.slice(template, separator="-",
                                         end=split_length)
    except (IndexError, ValueError):
        return None
    regex = template_regex(template, prefix_template)
    return (regex, template) if regex is not None else None


def sequence_number(match, template):
    from senaite.core.idserver import idserver
    groups = match.groupdict()
    if groups.get("seq"):
        return int(groups["seq"])
    if groups.get("alpha"):
        return idserver.to_int(idserver.get_alpha_or_number(
            groups["alpha"], template), None)
    return None


def advance_counters(portal):
    """Set every counter below the highest migrated number to it."""
    from senaite.core.interfaces import INumberGenerator
    from zope.component import getUtility
    generator = getUtility(INumberGenerator)
    counters = []
    for key, number in sorted(highest_sequences(portal).items()):
        old = generator.get(key, 0)
        if old < number:
            generator.set_number(key, int(number))
        counters.append({"key": key, "old": old,
                         "new": max(old, number)})
    return counters
