"""The pure parts of reads as of an instant: what `as_of` accepts, when a version came
to be, how a list's filters match a past state, and what an as-of list refuses."""

from datetime import UTC, datetime, timedelta

import pytest

from services.gateway.as_of import as_of_in, page_as_of
from shared.as_of import changed_at, equal_to, values_at
from shared.clock import utcnow
from shared.codec import rfc3339
from shared.errors import InvalidInput


@pytest.mark.parametrize(
    "given",
    ["2026-03-01T00:00:00Z", "2026-03-01t05:00:00.123456+05:00", "1989-12-31T23:59:59-08:00"],
)
def test_as_of_takes_past_rfc3339_instants_with_an_offset(given):
    assert as_of_in({"as_of": given}) == given


@pytest.mark.parametrize(
    "given",
    [
        "2026-03-01T00:00:00",  # no offset: whose midnight?
        "2026-03-01",
        "2026-03-01 00:00:00Z",
        "1700000000",
        "1 March 2026",
        "2026-02-30T00:00:00Z",
    ],
)
def test_as_of_refuses_anything_else_naming_it(given):
    with pytest.raises(InvalidInput) as refused:
        as_of_in({"as_of": given})
    assert refused.value.errors[0]["loc"] == ["as_of"]


def test_as_of_refuses_the_future():
    with pytest.raises(InvalidInput) as refused:
        as_of_in({"as_of": rfc3339(utcnow() + timedelta(minutes=1))})
    assert refused.value.errors[0]["loc"] == ["as_of"]
    assert "future" in refused.value.errors[0]["msg"]


def test_no_as_of_is_a_read_of_the_present():
    assert as_of_in({"status": "granted"}) is None


def test_a_version_came_to_be_at_the_millisecond_a_read_shows():
    version = {"updated_at": "2026-03-01T09:00:00.123987Z"}
    assert changed_at(version) == datetime(2026, 3, 1, 9, 0, 0, 123000, tzinfo=UTC)


def test_filters_match_the_state_then_through_lists_as_mongodb_does():
    venture = {
        "status": "active",
        "sector": "api_manufacturing",
        "partners": [{"country": "PK"}, {"country": "CN"}],
    }
    assert values_at(venture, "partners.country") == ["PK", "CN"]
    by_country = {"partner_country": "partners.country"}
    assert equal_to({"status": "active", "partner_country": "CN"}, by_country)(venture)
    assert not equal_to({"partner_country": "TR"}, by_country)(venture)
    assert not equal_to({"status": "suspended"})(venture)
    assert equal_to({})(venture)


class Investor:
    role, owner = "investor", "Owner One"


@pytest.mark.parametrize(
    ("query", "named"),
    [({"q": "indus"}, "q"), ({"count": "status"}, "count"), ({"sort": "-name"}, "sort")],
)
def test_an_as_of_list_refuses_the_search_index_parameters_naming_them(query, named):
    def never(*args):
        raise AssertionError("not asked")

    with pytest.raises(InvalidInput) as refused:
        page_as_of(never, "2026-03-01T00:00:00Z", {**query, "as_of": "…"}, Investor())
    assert refused.value.errors[0]["loc"] == [named]


def test_an_as_of_list_is_scoped_to_an_investors_own_and_paged():
    asked = []

    def listed(filters, after, limit, as_of):
        asked.append((filters, after, limit, as_of))
        return [{"id": "jv_1"}, {"id": "jv_2"}, {"id": "jv_3"}]

    args = {"as_of": "2026-03-01T00:00:00Z", "status": "active", "sort": "id", "limit": "2"}
    page = page_as_of(listed, args["as_of"], args, Investor())
    assert asked == [({"status": "active", "owner": "Owner One"}, None, 3, args["as_of"])]
    assert [item["id"] for item in page["items"]] == ["jv_1", "jv_2"] and page["next_cursor"]
