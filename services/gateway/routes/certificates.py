"""Licence certificates (services/gateway/certificates.py): a granted licence's signed
certificate, for its holder and for anyone, as JSON and as a QR code; whether the
licence it names is in force now; and the keys that verify it."""

from typing import Any

from werkzeug.wrappers import Response

from services.gateway.certificates import (
    Certificate,
    CertificateStatus,
    SigningKeys,
    certificate_payload,
    in_force,
    qr_code_svg,
)
from services.gateway.http import json_response
from services.gateway.routing import route
from shared.clock import utcnow
from shared.pagination import MAX_LIMIT
from shared.signing import PublishedKeys

TAG = "certificates"
# Public answers a browser or proxy may keep for a moment; a status changes with the
# register, so it is never kept.
PUBLIC_CACHE = {"Cache-Control": "public, max-age=60"}
NO_STORE = {"Cache-Control": "no-store"}


class CertificateRoutes:
    """Mixed into the gateway service, which provides `licensing`, `facilities`,
    `ventures`, `throttle` and (from LicenceRoutes) `_visible_licence`."""

    licensing: Any  # nameko dependencies of the gateway service
    facilities: Any
    ventures: Any
    throttle: Any
    signing_keys = SigningKeys()

    def _public_licence(self, request, license_id: str) -> dict:
        """The licence, for a caller without a key: its reads (RPCs, a signature) are
        counted per client address against the expensive-read limit, as a key's are."""
        self.throttle.expensive_read(f"address {request.remote_addr or 'unknown'}")
        return self.licensing.get_license(license_id)

    def _certificate(self, licence: dict) -> dict:
        history: list[dict] = []
        while True:
            page = self.licensing.license_history(
                licence["id"], history[-1]["id"] if history else None, MAX_LIMIT
            )
            history += page
            if len(page) < MAX_LIMIT:
                break
        payload = certificate_payload(
            licence,
            history,
            self.facilities.get_facility(licence["facility_id"]),
            self.ventures.get_venture(licence["venture_id"]),
        )
        return self.signing_keys.sign(payload)

    @route(
        "GET",
        "/.well-known/jvreg-keys.json",
        summary="The public keys that verify certificates, each with its id and window",
        tag=TAG,
        public=True,
        response=PublishedKeys,
    )
    def signing_keys_document(self, request):
        return json_response(self.signing_keys.published().model_dump(), 200, PUBLIC_CACHE)

    @route(
        "GET",
        "/v1/licenses/<license_id>/certificate",
        summary="The signed certificate of a granted licence (409: never granted)",
        tag=TAG,
        response=Certificate,
        refusals=(409,),
    )
    def license_certificate(self, request, principal, license_id):
        return json_response(self._certificate(self._visible_licence(principal, license_id)))

    @route(
        "GET",
        "/v1/public/licenses/<license_id>/certificate",
        summary="The signed certificate of a granted licence, for anyone (409: never granted)",
        tag=TAG,
        public=True,
        response=Certificate,
        refusals=(409, 429),
    )
    def public_license_certificate(self, request, license_id):
        certificate = self._certificate(self._public_licence(request, license_id))
        return json_response(certificate, 200, PUBLIC_CACHE)

    @route(
        "GET",
        "/v1/public/licenses/<license_id>/certificate.svg",
        summary="The signed certificate as a QR code (SVG) of its JSON",
        tag=TAG,
        public=True,
        response=None,
        media_type="image/svg+xml",
        refusals=(409, 429),
    )
    def public_license_certificate_qr_code(self, request, license_id):
        certificate = self._certificate(self._public_licence(request, license_id))
        svg = qr_code_svg(certificate, f"Certificate of licence {license_id}")
        return Response(svg, content_type="image/svg+xml", headers=PUBLIC_CACHE)

    @route(
        "GET",
        "/v1/public/licenses/<license_id>/certificate/status",
        summary="Whether the licence is in force according to the register now",
        tag=TAG,
        public=True,
        response=CertificateStatus,
        refusals=(429,),
    )
    def public_license_certificate_status(self, request, license_id):
        status = in_force(self._public_licence(request, license_id), utcnow())
        return json_response(status.model_dump(), 200, NO_STORE)
