"""CSRF protection of the web pages' forms: the synchronizer token pattern. Each
session holds a random token (services/gateway/web/sessions.py); every form that
changes state carries it in a hidden field, and a POST whose token is missing or not
its session's is refused (403) before anything is done."""

import hmac
from collections.abc import Mapping

from services.gateway.web.sessions import WebSession
from shared.errors import Forbidden

FIELD = "csrf_token"


class CsrfRefused(Forbidden):
    pass


def check(session: WebSession | None, form: Mapping[str, str]) -> WebSession:
    """The session the form was sent from, if it carries that session's token."""
    sent = form.get(FIELD, "")
    if session is None or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise CsrfRefused(
            "this form did not come from your current session (it expired, or another "
            "site sent it); open the page again and resend it"
        )
    return session
