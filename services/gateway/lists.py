"""The gateway's lists of ventures, facilities and licences, answered by the search
service (docs/architecture.md §10): the query's parameters, the owner scoping of an
investor, the page's cursor, and read your writes (the versions this gateway wrote or
read a moment ago, which the search instance waits for, bounded)."""

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from shared.pagination import decode_cursor, encode_cursor, filters_in, parse_limit

# How long the gateway remembers a version it wrote (or read) for lists to wait for:
# far longer than the event path takes (milliseconds), short enough that a list
# does not look up many.
REMEMBER_SECONDS = 10.0
REMEMBER_LIMIT = 1000
PREFIXES = {"jv_": "venture", "fac_": "facility", "lic_": "licence"}


class RecentVersions:
    """The versions of ventures, facilities and licences this gateway process wrote or
    read in the last REMEMBER_SECONDS, with their owner organisation."""

    def __init__(self) -> None:
        self.versions: OrderedDict[str, tuple[float, int, str]] = OrderedDict()

    def remember(self, answer: Any) -> None:
        if not isinstance(answer, dict):
            return
        identifier, version, owner = answer.get("id"), answer.get("version"), answer.get("owner")
        if not (isinstance(identifier, str) and isinstance(version, int) and owner):
            return
        if not identifier.startswith(tuple(PREFIXES)):
            return
        known = self.versions.get(identifier)
        if known and known[1] >= version:
            return
        self.versions[identifier] = (time.monotonic() + REMEMBER_SECONDS, version, str(owner))
        self.versions.move_to_end(identifier)
        while len(self.versions) > REMEMBER_LIMIT:
            self.versions.popitem(last=False)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        while self.versions:
            first = next(iter(self.versions.values()))
            if first[0] > now:
                break
            self.versions.popitem(last=False)

    def visible_to(self, principal, doctype: str) -> dict[str, int]:
        self._forget_expired()
        return {
            identifier: version
            for identifier, (_, version, owner) in self.versions.items()
            if PREFIXES.get(identifier.split("_", 1)[0] + "_") == doctype
            and principal.may_see(owner)
        }

    def every(self) -> dict[str, int]:
        """Every version remembered, whoever wrote it: the public register shows
        everything, and a licence's document there carries its plant's and venture's."""
        self._forget_expired()
        return {identifier: version for identifier, (_, version, _) in self.versions.items()}


RECENT = RecentVersions()


def search_list(search, doctype: str, request, principal) -> dict:
    """The page of `doctype` the request asks for, as the search service answers it."""
    return search_page(search, doctype, request.args, principal)


def search_page(search, doctype: str, args: Mapping[str, str], principal) -> dict:
    """The page of `doctype` that `args` (a list's query parameters) ask for; an
    investor's list is always limited to its own organisation's."""
    query = {key: value for key, value in filters_in(args).items()}
    if principal.role == "investor":
        query["owner"] = principal.owner
    limit = parse_limit(args.get("limit"))
    cursor = decode_cursor(args.get("cursor"))
    answer = search.list(doctype, query, cursor, limit, RECENT.visible_to(principal, doctype))
    page: dict = {
        "items": answer["items"],
        "next_cursor": encode_cursor(answer["next_cursor"]) if answer["next_cursor"] else None,
    }
    if "counts" in answer:
        page["counts"] = answer["counts"]
    return page


class Remembering:
    """A service's client that remembers the versions of what it answers (RECENT)."""

    def __init__(self, proxy):
        self._proxy = proxy

    def within(self, timeout: float) -> "Remembering":
        return Remembering(self._proxy.within(timeout))

    def __getattr__(self, method: str):
        call = getattr(self._proxy, method)

        def remembered(*args, **kwargs):
            answer = call(*args, **kwargs)
            RECENT.remember(answer)
            return answer

        return remembered
