"""Debian version comparison (deb-version(7)), so kernel resolution needs no python3-apt."""

from __future__ import annotations

import re


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _cmp_part(a: str, b: str) -> int:
    while a or b:
        na = re.match(r"[^\d]*", a)
        nb = re.match(r"[^\d]*", b)
        sa = na.group(0) if na else ""
        sb = nb.group(0) if nb else ""
        a, b = a[len(sa) :], b[len(sb) :]
        for i in range(max(len(sa), len(sb))):
            oa = _order(sa[i]) if i < len(sa) else 0
            ob = _order(sb[i]) if i < len(sb) else 0
            if oa != ob:
                return -1 if oa < ob else 1
        da = re.match(r"\d*", a)
        db = re.match(r"\d*", b)
        xa = da.group(0) if da else ""
        xb = db.group(0) if db else ""
        a, b = a[len(xa) :], b[len(xb) :]
        ia, ib = int(xa or 0), int(xb or 0)
        if ia != ib:
            return -1 if ia < ib else 1
    return 0


def _split(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        epoch = int(e)
    if "-" in v:
        up, rev = v.rsplit("-", 1)
    else:
        up, rev = v, ""
    return epoch, up, rev


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as a is older, equal or newer than b."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)
