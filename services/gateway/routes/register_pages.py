"""The public register's web pages (no sign-in): search the register, a licence with
its status, validity, history and certificate, a venture with its plants and licences.
They show exactly the public register's views (services/search/contract.py's
`Public*`), as `/v1/public/…` answers them, and of a licence's history only what a
public register shows: when, which step, and DRAP's decision reference — never the
actors or their notes."""

from datetime import UTC, datetime
from typing import Any, get_args
from urllib.parse import urlencode

from werkzeug.wrappers import Request

from services.facilities.contract import FacilityStatus
from services.gateway.lists import RECENT
from services.gateway.web.pages import page, render
from services.licensing.contract import LicenceStatus, LicenceType
from services.ventures.contract import Sector, VentureStatus
from shared.errors import InvalidInput
from shared.pagination import decode_cursor, encode_cursor
from shared.vocabulary import Province

REGISTER_PAGE_SIZE = 25
# What the search form offers, by list: the public lists' own filters.
LISTS = {"licences": "licence", "plants": "facility", "ventures": "venture"}
EXPORTS = {"licences": "licenses", "plants": "facilities", "ventures": "ventures"}
STATUSES = {
    "licences": get_args(LicenceStatus),
    "plants": get_args(FacilityStatus),
    "ventures": get_args(VentureStatus),
}
FORM_FILTERS = ("q", "status", "province", "sector", "partner_country", "type", "valid_on")
# A licence that was once granted has a certificate (rejected ones never were).
EVER_GRANTED = ("granted", "suspended", "revoked", "expired")


def public_timeline(history: list[dict]) -> list[dict]:
    """A licence's history as the public register shows it."""
    return [
        {
            "time": entry["time"],
            "to": entry["to"],
            "event": entry["event"],
            "decision_ref": (entry.get("fields") or {}).get("decision_ref"),
        }
        for entry in history
    ]


def in_force(licence: dict, now: datetime) -> bool:
    valid_until = licence.get("valid_until")
    return (
        licence["status"] == "granted"
        and valid_until is not None
        and datetime.fromisoformat(valid_until) > now
    )


class RegisterPages:
    """Mixed into the gateway service, which provides `search`, `licensing`,
    `throttle` and the web routes' `_session`."""

    search: Any  # nameko dependencies of the gateway service
    licensing: Any
    throttle: Any
    _session: Any  # WebRoutes'

    def _public_read(self, request: Request) -> None:
        # As /v1/public: anyone may read, as fast as one key may, per client address.
        self.throttle.expensive_read(f"address {request.remote_addr or 'unknown'}")

    @page("GET", "/register")
    def register_page(self, request):
        self._public_read(request)
        listed = request.args.get("list", "licences")
        if listed not in LISTS:
            raise InvalidInput(
                f"list is one of {', '.join(LISTS)}",
                errors=[{"loc": ["query", "list"], "msg": "unknown list", "type": "enum"}],
            )
        # A filter the list does not take (type on plants) is not sent, nor offered.
        offered = FORM_FILTERS if listed == "licences" else FORM_FILTERS[:-2]
        form = {name: request.args.get(name, "").strip() for name in offered}
        query = {name: value for name, value in form.items() if value}
        cursor = decode_cursor(request.args.get("cursor"))
        found = self.search.register(
            LISTS[listed], query, cursor, REGISTER_PAGE_SIZE, RECENT.every()
        )
        next_cursor = found["next_cursor"]
        return render(
            "register.html",
            self._session(request),
            listed=listed,
            form=form,
            items=found["items"],
            next_cursor=encode_cursor(next_cursor) if next_cursor else None,
            export_base=f"/v1/public/{EXPORTS[listed]}",
            export_query=urlencode(query),
            options={
                "status": STATUSES[listed],
                "province": get_args(Province),
                "sector": get_args(Sector),
                "type": get_args(LicenceType),
            },
        )

    @page("GET", "/register/licences/<license_id>")
    def register_licence_page(self, request, license_id):
        self._public_read(request)
        licence = self.search.register_item("licence", license_id, RECENT.every())
        history = self.licensing.license_history(license_id, None, 200)
        return render(
            "register_licence.html",
            self._session(request),
            licence=licence,
            timeline=public_timeline(history),
            certified=licence["status"] in EVER_GRANTED,
            in_force=in_force(licence, datetime.now(UTC)),
        )

    @page("GET", "/register/ventures/<venture_id>")
    def register_venture_page(self, request, venture_id):
        self._public_read(request)
        recent = RECENT.every()
        venture = self.search.register_item("venture", venture_id, recent)
        by_venture = {"venture_id": venture_id}
        plants = self.search.register("facility", by_venture, None, 200, recent)
        licences = self.search.register("licence", by_venture, None, 200, recent)
        return render(
            "register_venture.html",
            self._session(request),
            venture=venture,
            plants=plants["items"],
            licences=licences["items"],
        )
