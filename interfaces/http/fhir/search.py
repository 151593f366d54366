"""FHIR R4 search parameters and searchset Bundles (http://hl7.org/fhir/R4/search.html): AND (repeated) of OR
(comma) values, date prefixes eq/ne/lt/gt/le/ge/sa/eb, modifiers per parameter, ``_count``/``_offset``
paging, ``_sort``, ``_include``; an empty value is ignored; an unknown parameter is a 400 unless the client
sent ``Prefer: handling=lenient`` (then it is ignored and left out of the self link)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from urllib.parse import urlencode

from flask import request

from hub.services.fhir import DateParam
from interfaces.http.fhir.common import REGISTRY, FhirError, Json, fhir_base, query_args
from mappings.ascii import is_digits
from mappings.fhir_values import within_calendar

DEFAULT_COUNT, MAX_COUNT = 20, 1000
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass
class Search:
    """A parsed search: ``params[name]`` = list (AND) of (modifier, values (OR))."""

    params: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # the (key, value) pairs applied, for links

    def values(self, name: str) -> list[list[str]]:
        return [vals for _, vals in self.params.get(name, [])]


def lenient() -> bool:
    """``Prefer: handling=lenient`` (R4 search.html#errors): ignore what cannot be used."""
    prefer = request.headers.get("Prefer", "")
    return any(p.strip().replace(" ", "") == "handling=lenient" for p in prefer.split(";") + prefer.split(","))


def parse_search(resource_type: str, sorts: set[str] | None = None) -> Search:
    """Read the query (:func:`query_args`) against the registry's parameters of ``resource_type``. A parameter
    with an empty value (``modality=``) is ignored, not a search for nothing (R4 search.html)."""
    support = REGISTRY[resource_type]
    known = {p.name: p for p in support.params}
    loose, s, problems = lenient(), Search(), []
    for key, value in query_args().items(multi=True):
        name, _, modifier = key.partition(":")
        if not value.strip(","):  # an empty value: the parameter is ignored (R4 search.html#combining)
            continue
        if name in ("_format", "_pretty"):
            s.used.append((key, value))
        elif name == "_count":
            s.count = _int(key, value, 0, MAX_COUNT)
        elif name == "_offset":
            s.offset = _int(key, value, 0, 10**9)
        elif name == "_total" and value in ("none", "estimate", "accurate"):
            s.used.append((key, value))
        elif name == "_summary" and value == "count":
            s.count = 0
        elif name == "_sort":
            applied = []
            for item in (v.strip() for v in value.split(",") if v.strip()):
                if item.lstrip("-") in (sorts or set()):
                    s.sort.append((item.lstrip("-"), item.startswith("-")))
                    applied.append(item)
                else:
                    problems.append(f"_sort by {item} is not supported")
            if applied:  # the self link lists what was applied only (search.html#errors)
                s.used.append((key, ",".join(applied)))
        elif name == "_include" and not modifier:
            if value in support.includes:
                s.includes.append(value)
                s.used.append((key, value))
            else:
                problems.append(f"_include={value} is not supported for {resource_type}")
        elif name in known and (not modifier or modifier in known[name].modifiers):
            s.params.setdefault(name, []).append((modifier, [v for v in _split(value) if v != ""]))
            s.used.append((key, value))
        else:
            problems.append(f"search parameter {key} is not supported for {resource_type}")
    if problems and not loose:
        raise FhirError(400, "; ".join(problems), "not-supported")
    return s


def _split(value: str) -> list[str]:
    """Comma-separated alternatives; ``\\,`` is a literal comma (search.html#escaping)."""
    return [p.replace("\\,", ",") for p in re.split(r"(?<!\\),", value)]


def _int(key: str, value: str, low: int, high: int) -> int:
    if not is_digits(value):
        raise FhirError(400, f"{key} must be a non-negative integer", "invalid")
    return max(low, min(int(value), high))


def parse_token(value: str) -> tuple[str | None, str]:
    """``[system]|code`` -> (system, code); no ``|`` -> (None, code); ``|code`` -> ("", code)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def parse_reference(value: str, resource_type: str) -> str | None:
    """``Type/id``, an absolute URL ending in it, or a bare id -> id (None: another resource type)."""
    parts = value.rstrip("/").split("/")
    if "_history" in parts:  # Type/id/_history/vid: the resource, whatever its version
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return parts[0] or None if parts else None
    return parts[-1] if parts[-2] == resource_type and parts[-1] else None


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$", re.ASCII)


def parse_date(value: str, zone: tzinfo | None = None, *, utc: bool = False) -> DateParam:
    """``[prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][zone]]]]`` -> the range it stands for, as naive times in the
    hub's zone (or UTC for ``_lastUpdated``); a value without offset is in that zone."""
    prefix = value[:2] if value[:2] in PREFIXES else "eq"
    text = value[2:] if value[:2] in PREFIXES else value
    if prefix == "ap":
        raise FhirError(400, "the ap (approximately) date prefix is not supported", "not-supported")
    found = _DATE.match(text)
    if not found:
        raise FhirError(400, f"{value!r} is not a FHIR date", "invalid")
    try:  # month 13, hour 25, offset +99:00 ...
        return _date_range(prefix, found.groups(), zone, utc)
    except (ValueError, OverflowError) as exc:
        raise FhirError(400, f"{value!r} is not a valid date ({exc})", "invalid") from None


def _date_range(prefix: str, parts: tuple[str | None, ...], zone: tzinfo | None, utc: bool) -> DateParam:
    y, mo, d, hh, mi, ss, frac, off = parts
    assert y is not None
    low = datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), int(ss or 0),
                   int(((frac or ".")[1:] + "000000")[:6]))
    if frac:
        step = timedelta(microseconds=10 ** (6 - min(len(frac) - 1, 6)))
    elif ss or mi:
        step = timedelta(seconds=1) if ss else timedelta(minutes=1)
    elif d:
        step = timedelta(days=1)
    else:
        step = None
    # The end of the calendar is where a range ends that would end past it (9999-12-31 is a valid search).
    if step is not None:
        high = within_calendar(lambda: low + step, low)
    elif mo:
        high = within_calendar(lambda: datetime(low.year + low.month // 12, low.month % 12 + 1, 1), low)
    else:
        high = within_calendar(lambda: datetime(low.year + 1, 1, 1), low)
    target = UTC if utc else zone
    if off:
        source = UTC if off == "Z" else datetime.strptime(off, "%z").tzinfo
        low, high = (within_calendar(lambda t=t: _to_zone(t.replace(tzinfo=source), target), t) for t in (low, high))
    elif utc and hh is not None:
        low, high = (within_calendar(lambda t=t: _to_zone(t.astimezone() if zone is None else t.replace(tzinfo=zone),
                                                          UTC), t) for t in (low, high))
    return DateParam(prefix, low, high)


def _to_zone(moment: datetime, zone: tzinfo | None) -> datetime:
    return (moment.astimezone(zone) if zone is not None else moment.astimezone()).replace(tzinfo=None)


# --------------------------------------------------------------------------- bundles
def searchset(resource_type: str, s: Search, resources: list[Json], total: int, included: list[Json]) -> Json:
    """A searchset Bundle with ``total`` and self/first/previous/next/last links (offset paging)."""
    base = fhir_base()

    def link(relation: str, offset: int) -> Json:
        query = [*s.used, ("_count", str(s.count)), ("_offset", str(max(offset, 0)))]
        return {"relation": relation, "url": f"{base}/{resource_type}?{urlencode(query)}"}

    links = [link("self", s.offset)]
    if s.count > 0:
        # Pages keep the grid of the asked offset: from _offset=1&_count=2 of 4, next and last are both 3.
        last = max(s.offset + (max(total, 1) - 1 - s.offset) // s.count * s.count, 0)
        links.append(link("first", 0))
        if s.offset > 0:  # from past the end, the previous page is the last one
            links.append(link("previous", max(min(s.offset - s.count, last), 0)))
        if s.offset + s.count < total:
            links.append(link("next", s.offset + s.count))
        links.append(link("last", last))
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
               for r in resources]
    entries += [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "include"}}
                for r in included]
    bundle: Json = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle
