"""The gateway's facility and licence routes without a broker: who may do what, whose
resources an investor sees, and the consistency tokens passed on (services
replaced by nameko's worker_factory mocks)."""

import json

import pytest
from nameko.testing.services import worker_factory
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.gateway.keys import Principal
from services.gateway.problems import problem_headers
from services.gateway.service import GatewayService
from shared.errors import Forbidden, NotFound, ServiceUnavailable

OWNER = "Lahore Pharma"
FACILITY = {"id": "fac_1", "venture_id": "jv_1", "owner": OWNER, "version": 1}
LICENCE = {
    "id": "lic_1",
    "facility_id": "fac_1",
    "type": "dml_basic",
    "owner": OWNER,
    "version": 2,
}


def request(method="POST", path="/v1/licenses", body: dict | None = None, query: str = ""):
    builder = EnvironBuilder(
        method=method,
        path=path,
        data=json.dumps(body or {}),
        content_type="application/json",
        query_string=query,
    )
    return Request(builder.get_environ())


def gateway_as(role: str, owner: str = OWNER):
    service = worker_factory(GatewayService)
    service.keys.authenticate.return_value = Principal(key_id="key_1", role=role, owner=owner)
    service.ventures.get_venture.return_value = {"id": "jv_1", "owner": OWNER, "version": 1}
    service.facilities.get_facility.return_value = FACILITY
    service.licensing.get_license.return_value = LICENCE
    return service


def test_an_investor_may_not_apply_for_another_organisations_facility():
    service = gateway_as("investor", owner="Rival Holdings")
    with pytest.raises(NotFound) as refused:
        service.apply_for_license(request(body={"facility_id": "fac_1", "type": "dml_basic"}))
    assert refused.value.errors[0]["loc"] == ["facility_id"]  # in the body (the edge says)
    service.licensing.apply_for_license.assert_not_called()


def test_an_unknown_facility_is_named_in_the_problem():
    service = gateway_as("ops")
    service.facilities.get_facility.side_effect = NotFound("no facility fac_9")
    with pytest.raises(NotFound) as refused:
        service.apply_for_license(request(body={"facility_id": "fac_9", "type": "dml_basic"}))
    assert refused.value.errors[0]["loc"] == ["facility_id"]  # in the body (the edge says)
    service.licensing.apply_for_license.assert_not_called()


def test_an_application_without_a_facility_id_is_left_to_licensing_to_refuse():
    service = gateway_as("investor")
    service.licensing.apply_for_license.return_value = LICENCE
    service.apply_for_license(request(body={"type": "dml_basic"}))
    service.facilities.get_facility.assert_not_called()
    body, actor, version = service.licensing.apply_for_license.call_args.args
    assert json.loads(body) == {"type": "dml_basic"} and actor["owner"] == OWNER
    assert version == 0  # nothing to wait for


def test_an_application_carries_the_version_of_the_facility_the_gateway_read():
    service = gateway_as("investor")
    service.facilities.get_facility.return_value = {**FACILITY, "version": 4}
    service.licensing.apply_for_license.return_value = LICENCE
    service.apply_for_license(request(body={"facility_id": "fac_1", "type": "dml_basic"}))
    assert service.licensing.apply_for_license.call_args.args[2] == 4


def test_a_registration_carries_the_version_of_the_venture_the_gateway_read():
    service = gateway_as("investor")
    service.ventures.get_venture.return_value = {"id": "jv_1", "owner": OWNER, "version": 3}
    service.facilities.register_facility.return_value = FACILITY
    service.register_facility(request(path="/v1/ventures/jv_1/facilities"), "jv_1")
    assert service.facilities.register_facility.call_args.args[3] == 3


def test_a_facility_a_service_cannot_learn_of_in_time_is_a_retry_later():
    service = gateway_as("investor")
    service.licensing.apply_for_license.side_effect = ServiceUnavailable(
        "not yet learned of facility fac_1", extra={"retry_after": 1}
    )
    with pytest.raises(ServiceUnavailable) as later:
        service.apply_for_license(request(body={"facility_id": "fac_1", "type": "dml_basic"}))
    assert problem_headers(later.value) == {"Retry-After": "1"}


def test_an_investor_may_not_register_a_facility_under_another_organisations_venture():
    service = gateway_as("investor", owner="Rival Holdings")
    with pytest.raises(NotFound):
        service.register_facility(request(path="/v1/ventures/jv_1/facilities"), "jv_1")
    service.facilities.register_facility.assert_not_called()


def test_investors_may_not_decide():
    service = gateway_as("investor")
    with pytest.raises(Forbidden):
        service.transition_license(request(body={"to": "under_review"}), "lic_1")
    service.licensing.transition_license.assert_not_called()


@pytest.mark.parametrize("role", ["regulator", "ops"])
def test_regulators_and_ops_decide(role):
    service = gateway_as(role, owner="DRAP Licensing Division")
    service.licensing.transition_license.return_value = {**LICENCE, "version": 3}
    response = service.transition_license(request(body={"to": "under_review"}), "lic_1")
    assert response.status_code == 200 and response.headers["ETag"] == '"3"'


def test_a_decision_is_answered_once_facilities_follows_it():
    service = gateway_as("regulator", owner="DRAP Licensing Division")
    service.licensing.transition_license.return_value = {**LICENCE, "version": 3}
    service.transition_license(request(body={"to": "granted"}), "lic_1")
    follows = service.facilities.within.return_value.caught_up_with_licence
    follows.assert_called_once_with("lic_1", "dml_basic", 3)


@pytest.mark.parametrize(
    "facilities_answer",
    [{"return_value": False}, {"side_effect": ServiceUnavailable("facilities is down")}],
)
def test_a_decision_facilities_does_not_follow_in_time_is_still_answered(facilities_answer, caplog):
    service = gateway_as("regulator", owner="DRAP Licensing Division")
    service.licensing.transition_license.return_value = {**LICENCE, "version": 3}
    service.facilities.within.return_value.caught_up_with_licence.configure_mock(
        **facilities_answer
    )
    response = service.transition_license(request(body={"to": "granted"}), "lic_1")
    assert response.status_code == 200
    lines = [r for r in caplog.records if r.name == "services.gateway.routes.licensing"]
    assert len(lines) == 1 and "fac_1" in lines[0].getMessage()


def test_regulators_may_not_apply():
    with pytest.raises(Forbidden):
        gateway_as("regulator").apply_for_license(request(body={"facility_id": "fac_1"}))


def test_an_investor_sees_neither_another_organisations_licence_nor_its_history():
    service = gateway_as("investor", owner="Rival Holdings")
    with pytest.raises(NotFound):
        service.get_license(request("GET"), "lic_1")
    with pytest.raises(NotFound):
        service.license_history(request("GET"), "lic_1")
    service.licensing.license_history.assert_not_called()
    with pytest.raises(NotFound):
        service.get_facility(request("GET"), "fac_1")


def test_an_investor_lists_only_its_own_organisations_facilities_and_licences():
    """Lists are the search service's (docs/architecture.md §10), scoped as before."""
    service = gateway_as("investor")
    service.search.list.return_value = {"items": [], "next_cursor": None}
    query = "owner=Someone+Else&status=granted&limit=10"
    service.list_facilities(request("GET", "/v1/facilities", query=query))
    service.list_licenses(request("GET", "/v1/licenses", query=query))
    asked = [call.args for call in service.search.list.call_args_list]
    assert [args[0] for args in asked] == ["facility", "licence"]
    for _, filters, cursor, limit, _ in asked:
        assert filters == {"owner": OWNER, "status": "granted"}
        assert (cursor, limit) == (None, 10)


def test_a_regulator_lists_everyone_s():
    service = gateway_as("regulator", owner="DRAP Licensing Division")
    service.search.list.return_value = {"items": [], "next_cursor": None}
    service.list_licenses(request("GET", "/v1/licenses", query="venture_id=jv_1"))
    _, filters, _, _, _ = service.search.list.call_args.args
    assert filters == {"venture_id": "jv_1"}
