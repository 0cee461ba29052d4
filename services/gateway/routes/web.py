"""The web pages of signed-in users (services/gateway/web): investors' ventures, plants,
licences and investments, and the regulators' workbench with its decision form and
live feed. Every page asks the same RPCs, with the same owner scoping and roles, as
the API route that answers the same question."""

import logging
from datetime import timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from services.gateway.lists import search_page
from services.gateway.problems import status_of
from services.gateway.web import csrf, workbench
from services.gateway.web.charts import Series, bar_chart
from services.gateway.web.pages import (
    STATIC_TYPES,
    SignInRequired,
    page,
    render,
    see_other,
    static_file,
)
from services.gateway.web.sessions import COOKIE, SIGNED_IN_LIFETIME, WebSession
from services.licensing.contract import EXPIRY_WARNING_DAYS
from shared.clock import utcnow
from shared.errors import NotFound, RegistryError, Unauthorized
from shared.refusals import log_refusal
from shared.settings import Settings

log = logging.getLogger(__name__)

PAGE_SIZE = "100"
COMMITTED = Series("committed", "committed")
DISBURSED = Series("disbursed", "disbursed")
REPORT_CURRENCY = "USD"


def landing(principal) -> str:
    return "/workbench" if principal.role == "regulator" else "/ventures"


def list_args(request: Request, **fixed: str) -> dict[str, str]:
    """A list page's query for the search service: its own words (`q`) and page
    (`cursor`), when given, and what the page fixes."""
    given = {name: request.args.get(name, "").strip() for name in ("q", "cursor")}
    return {"limit": PAGE_SIZE, **{k: v for k, v in given.items() if v}, **fixed}


class WebRoutes:
    """Mixed into the gateway service, which provides the services' clients, `keys`,
    `throttle`, `config`, `sessions` (services/gateway/web/sessions.py), and the other
    route mixins' `_venture_detail`, `_visible_licence`, `_visible_facility` and
    `_plant_follows`."""

    sessions: Any  # nameko dependencies of the gateway service
    config: Any
    keys: Any
    throttle: Any
    search: Any
    licensing: Any
    investments: Any
    _visible_licence: Any  # LicenceRoutes'
    _visible_facility: Any  # FacilityRoutes'

    # --- sessions --------------------------------------------------------------------

    def _session(self, request: Request) -> WebSession | None:
        return self.sessions.find(request.cookies.get(COOKIE))

    def _signed_in(self, request: Request, *roles: str, expensive: bool = False) -> WebSession:
        """The session of a signed-in visitor whose key may see this page (the API's
        roles: another role is 403); a list or report counts as the key's expensive read."""
        session = self._session(request)
        if session is None or session.principal is None:
            raise SignInRequired("sign in to see this page")
        if roles:
            session.principal.require(*roles)
        if expensive:
            self.throttle.expensive_read(session.principal.key_id)
        return session

    def _with_cookie(self, request: Request, response: Response, session: WebSession) -> Response:
        secure = Settings.from_config(self.config).web_secure_cookies
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(SIGNED_IN_LIFETIME.total_seconds()),
            httponly=True,
            samesite="Strict",
            secure=request.scheme == "https" if secure is None else secure,
            path="/",
        )
        return response

    # --- pages for everyone ----------------------------------------------------------

    @page("GET", "/")
    def home(self, request):
        return render("home.html", self._session(request))

    @page("GET", "/static/<name>")
    def static(self, request, name):
        if name not in STATIC_TYPES:
            raise NotFound(f"no file {name}")
        response = Response(static_file(name), content_type=STATIC_TYPES[name])
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    @page("GET", "/sign-in")
    def sign_in_form(self, request):
        session = self._session(request)
        if session is not None and session.principal is not None:
            return see_other(landing(session.principal))
        if session is None:
            # Its token guards the form: nobody else's page can sign this browser in.
            session = self.sessions.start()
        return self._with_cookie(request, render("sign_in.html", session), session)

    @page("POST", "/sign-in")
    def sign_in(self, request):
        address = request.remote_addr or "unknown"
        self.throttle.check_address(address)
        form_session = csrf.check(self._session(request), request.form)
        raw_key = request.form.get("api_key", "").strip()
        try:
            principal = self.keys.authenticate(f"Bearer {raw_key}")
        except Unauthorized as refused:
            self.throttle.failed_authentication(address)
            log_refusal(request, 401, refused)
            error = (
                "Enter your API key."
                if not raw_key
                else "That API key is unknown, revoked or expired. Check it and try again."
            )
            return render("sign_in.html", form_session, 401, error=error)
        # A new session id once signed in: one set before (by anyone) opens nothing.
        self.sessions.end(form_session.id)
        session = self.sessions.start(principal)
        log.info("signed in to the web pages: key %s (%s)", principal.key_id, principal.role)
        return self._with_cookie(request, see_other(landing(principal)), session)

    @page("POST", "/sign-out")
    def sign_out(self, request):
        session = csrf.check(self._session(request), request.form)
        self.sessions.end(session.id)
        response = see_other("/")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict")
        return response

    # --- investors (and every signed-in role: the API lets all read) ------------------

    @page("GET", "/ventures")
    def ventures_page(self, request):
        return self._list_page(request, "venture", "ventures.html", sort="name")

    @page("GET", "/ventures/<venture_id>")
    def venture_page(self, request, venture_id):
        session = self._signed_in(request)
        venture = self._venture_detail(session.principal, venture_id)
        summary = venture["investment_summary"]
        chart = None
        if "problem" not in summary:
            chart = bar_chart(
                "by-partner",
                f"Investment by partner ({summary['currency']})",
                "Committed and disbursed amounts of each partner of the venture.",
                "Partner",
                [COMMITTED, DISBURSED],
                [(p["partner"], [p["committed"], p["disbursed"]]) for p in summary["by_partner"]],
            )
        return render("venture.html", session, venture=venture, chart=chart)

    @page("GET", "/plants")
    def plants_page(self, request):
        return self._list_page(request, "facility", "plants.html", sort="name")

    @page("GET", "/licences")
    def licences_page(self, request):
        return self._list_page(request, "licence", "licences.html", sort="-updated_at")

    def _list_page(self, request, doctype: str, template: str, sort: str):
        """A signed-in list page: the search service's page of `doctype` the principal
        may see, in `sort` order unless the request asks for another."""
        session = self._signed_in(request, expensive=True)
        args = list_args(request, sort=sort)
        found = search_page(self.search, doctype, args, session.principal)
        return render(template, session, page=found, q=args.get("q", ""))

    @page("GET", "/licences/<license_id>")
    def licence_page(self, request, license_id):
        return self._licence_view(self._signed_in(request), license_id)

    def _licence_view(
        self,
        session: WebSession,
        license_id: str,
        status: int = 200,
        form: dict | None = None,
        refusal: RegistryError | None = None,
    ) -> Response:
        principal = session.principal
        licence = self._visible_licence(principal, license_id)
        plant = self._visible_facility(principal, licence["facility_id"])
        history = self.licensing.license_history(license_id, None, 200)
        return render(
            "licence.html",
            session,
            status,
            licence=licence,
            plant=plant,
            history=history,
            may_decide=principal is not None and principal.role in ("regulator", "ops"),
            targets=workbench.TARGETS,
            form=form or {},
            refusal=refusal,
            field_errors=workbench.field_errors(refusal) if refusal else {},
        )

    @page("GET", "/investments")
    def investments_page(self, request):
        session = self._signed_in(request, expensive=True)
        principal = session.principal
        # As GET /v1/investments/summary: an investor's portfolio is its own ventures.
        owner = principal.owner if principal.role == "investor" else None
        summary = self.investments.portfolio_summary(
            {"currency": REPORT_CURRENCY, "group_by": "partner_country"}, owner
        )
        by_partner = bar_chart(
            "by-partner-country",
            f"Investment by partner country ({REPORT_CURRENCY})",
            "Committed and disbursed amounts of the partners of each country.",
            "Partner country",
            [COMMITTED, DISBURSED],
            [(g["group"], [g["committed"], g["disbursed"]]) for g in summary["groups"]],
        )
        by_month = bar_chart(
            "by-month",
            f"Disbursements by month ({REPORT_CURRENCY})",
            "The amount disbursed in each month, by value date.",
            "Month",
            [DISBURSED],
            [(m["month"], [m["disbursed"]]) for m in summary["monthly_disbursements"]],
        )
        return render("investments.html", session, summary=summary, charts=[by_partner, by_month])

    # --- regulators ------------------------------------------------------------------

    @page("GET", "/workbench")
    def workbench_page(self, request):
        session = self._signed_in(request, "regulator", "ops", expensive=True)
        now = utcnow()
        waiting = []
        for status in workbench.AWAITING:
            found = search_page(
                self.search,
                "licence",
                {"status": status, "sort": "updated_at", "limit": PAGE_SIZE},
                session.principal,
            )
            applications = found["items"]
            grouped = workbench.by_age(applications, now)
            waiting.append((status, len(applications), grouped, found["next_cursor"]))
        # Licences in their expiry-warning window, the nearest first (license.expiring).
        horizon = (now + timedelta(days=max(EXPIRY_WARNING_DAYS))).date().isoformat()
        expiring = search_page(
            self.search,
            "licence",
            {
                "status": "granted",
                "expiring_before": horizon,
                "sort": "valid_until",
                "limit": PAGE_SIZE,
            },
            session.principal,
        )
        return render(
            "workbench.html",
            session,
            waiting=waiting,
            expiring=expiring["items"],
            more_expiring=bool(expiring["next_cursor"]),
            feed=self._feed(session),
        )

    @page("GET", "/workbench/feed")
    def decision_feed(self, request):
        session = self._signed_in(request, "regulator", "ops", expensive=True)
        return render("feed.html", session, feed=self._feed(session))

    def _feed(self, session: WebSession) -> list[dict]:
        latest = search_page(
            self.search, "licence", {"sort": "-updated_at", "limit": "50"}, session.principal
        )
        return workbench.decisions(latest["items"])

    @page("POST", "/licences/<license_id>/decision")
    def decide(self, request, license_id):
        session = self._signed_in(request, "regulator", "ops")
        csrf.check(session, request.form)
        principal = session.principal
        try:
            # The API's route does the same: the same RPC, rules and refusals.
            licence = self.licensing.transition_license(
                license_id, workbench.decision_body(request.form), principal.model_dump()
            )
        except RegistryError as refused:
            log_refusal(request, status_of(refused), refused)
            form = {name: request.form.get(name, "") for name in workbench.DECISION_FIELDS}
            return self._licence_view(session, license_id, status_of(refused), form, refused)
        self._plant_follows(licence)
        return see_other(f"/licences/{license_id}")
