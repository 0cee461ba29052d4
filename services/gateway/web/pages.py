"""The HTTP side of the web pages: the Jinja2 templates, the entrypoint that answers a
page (and a refusal as a page, not a problem document) and the headers every page
carries."""

from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib.resources import files

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from services.gateway.http import ApiEndpoint
from services.gateway.problems import UnsupportedMediaType, problem_for, status_of
from services.gateway.web import csrf
from services.gateway.web.sessions import WebSession
from shared.errors import RegistryError, Unauthorized

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
STATIC = files("services.gateway.web") / "static"
STATIC_TYPES = {"site.css": "text/css; charset=utf-8", "feed.js": "text/javascript"}
# Pages load only the gateway's own files; nothing may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SignInRequired(Unauthorized):
    """A page for signed-in users, asked for without a live session."""


def when(moment: str | datetime | None) -> str:
    """A moment of the wire (RFC 3339) as people read it, in UTC."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.strftime("%d %b %Y %H:%M UTC")


def money(figure: str | None) -> str:
    """A report's decimal figure with its thousands separated: 3,092,500.00."""
    return "—" if figure is None else f"{Decimal(figure):,}"


def label(value: str | None) -> str:
    """A wire value (`under_review`, `khyber_pakhtunkhwa`) as words."""
    return "—" if value is None else value.replace("_", " ")


TEMPLATES = Environment(
    loader=PackageLoader("services.gateway.web", "templates"),
    autoescape=select_autoescape(("html", "svg")),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(when=when, label=label, money=money)
TEMPLATES.globals["CSRF_FIELD"] = csrf.FIELD


def render(
    template: str,
    session: WebSession | None,
    status: int = 200,
    **context,
) -> Response:
    """A page for the visitor of `session` (the layout shows who is signed in)."""
    body = TEMPLATES.get_template(template).render(
        session=session, principal=session.principal if session else None, **context
    )
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers.update(SECURITY_HEADERS)
    # A page may show what only its signed-in reader may see: no cache keeps it.
    response.headers["Cache-Control"] = "no-store"
    return response


def see_other(location: str) -> Response:
    """After a form: the browser asks for `location` with GET (Post/Redirect/Get)."""
    return redirect(location, 303)


@cache
def static_file(name: str) -> bytes:
    return (STATIC / name).read_bytes()


class WebPage(ApiEndpoint):
    """A web page: its forms are URL-encoded, and a refusal is answered as a page
    (a visitor who is not signed in is sent to the sign-in form)."""

    def require_media_type(self, request: Request) -> None:
        if request.mimetype != FORM_MEDIA_TYPE:
            raise UnsupportedMediaType(
                f"send the form as {FORM_MEDIA_TYPE}, not {request.mimetype or 'untyped'}",
                errors=[
                    {"loc": ["header", "Content-Type"], "msg": "not a form", "type": "media_type"}
                ],
            )

    def status_of(self, error: RegistryError) -> int:
        # What the visitor is answered, for the refusal's log line.
        return 303 if isinstance(error, SignInRequired) else status_of(error)

    def response_from_exception(self, exc):
        if isinstance(exc, SignInRequired):
            return see_other("/sign-in")
        problem = problem_for(exc)  # logs an unexpected error
        status = status_of(exc) if isinstance(exc, RegistryError) else problem["status"]
        return render("error.html", None, status, problem=problem)


page = WebPage.decorator
