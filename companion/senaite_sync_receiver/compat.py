# -*- coding: utf-8 -*-
"""Python 2/3 helpers. Pure, no Zope imports."""
import sys

PY2 = sys.version_info[0] == 2

if PY2:  # pragma: no cover
    string_types = (str, unicode)  # noqa: F821
    text_type = unicode  # noqa: F821
    binary_type = str
else:
    string_types = (str,)
    text_type = str
    binary_type = bytes


def to_text(value, encoding="utf-8"):
    """Return value as text (unicode on Python 2)."""
    if isinstance(value, binary_type):
        return value.decode(encoding)
    return value


def to_native(value, encoding="utf-8"):
    """Return value as the native str type (bytes on Python 2)."""
    if PY2 and isinstance(value, text_type):
        return value.encode(encoding)
    if not PY2 and isinstance(value, binary_type):
        return value.decode(encoding)
    return value
