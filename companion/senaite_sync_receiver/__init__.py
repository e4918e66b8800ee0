# -*- coding: utf-8 -*-
"""senaite-sync receiver: destination-side routes of senaite-sync.

Importing this package registers the ``sync/*`` routes on senaite.jsonapi's
router (see ``routes``). Outside a Zope process (for example ``py_compile``
checks on Python 3) the import of the routes is skipped.
"""
import logging

logger = logging.getLogger("senaite_sync_receiver")

NAME = "senaite.sync.receiver"
VERSION = "0.3.0"
PROTOCOL = 2

try:
    import senaite.jsonapi  # noqa: F401
except ImportError:  # pragma: no cover - only outside SENAITE
    HAS_SENAITE = False
else:
    HAS_SENAITE = True

if HAS_SENAITE:
    from senaite_sync_receiver import routes  # noqa: F401,E402
