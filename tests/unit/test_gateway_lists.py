"""The gateway's read-your-writes for lists (services/gateway/lists.py,
docs/architecture.md §10): the versions its owners' RPCs answered, remembered a moment
and passed to the search service for the lists their caller may see."""

from services.gateway import lists
from services.gateway.keys import Principal

INVESTOR = Principal(key_id="key_1", role="investor", owner="Lahore Pharma")
OTHER = Principal(key_id="key_2", role="investor", owner="Karachi Pharma")
REGULATOR = Principal(key_id="key_3", role="regulator", owner="DRAP")


def test_a_list_waits_for_what_its_caller_may_see_of_its_doctype():
    recent = lists.RecentVersions()
    recent.remember({"id": "jv_1", "version": 2, "owner": "Lahore Pharma"})
    recent.remember({"id": "fac_1", "version": 1, "owner": "Lahore Pharma"})
    recent.remember({"id": "jv_2", "version": 1, "owner": "Karachi Pharma"})
    assert recent.visible_to(INVESTOR, "venture") == {"jv_1": 2}
    assert recent.visible_to(INVESTOR, "facility") == {"fac_1": 1}
    assert recent.visible_to(OTHER, "venture") == {"jv_2": 1}
    assert recent.visible_to(REGULATOR, "venture") == {"jv_1": 2, "jv_2": 1}
    assert recent.visible_to(REGULATOR, "licence") == {}


def test_only_a_later_version_replaces_a_remembered_one_and_others_are_ignored():
    recent = lists.RecentVersions()
    recent.remember({"id": "jv_1", "version": 3, "owner": "Lahore Pharma"})
    recent.remember({"id": "jv_1", "version": 2, "owner": "Lahore Pharma"})  # an older read
    recent.remember([{"id": "jv_9", "version": 1, "owner": "Lahore Pharma"}])  # a list
    recent.remember({"id": "inv_1", "version": 1, "owner": "Lahore Pharma"})  # not listed
    recent.remember({"id": "jv_8", "owner": "Lahore Pharma"})  # no version
    assert recent.visible_to(INVESTOR, "venture") == {"jv_1": 3}


def test_versions_are_forgotten_after_a_while(monkeypatch):
    recent = lists.RecentVersions()
    now = [1000.0]
    monkeypatch.setattr(lists.time, "monotonic", lambda: now[0])
    recent.remember({"id": "jv_1", "version": 1, "owner": "Lahore Pharma"})
    now[0] += lists.REMEMBER_SECONDS - 1
    assert recent.visible_to(INVESTOR, "venture") == {"jv_1": 1}
    now[0] += 2
    assert recent.visible_to(INVESTOR, "venture") == {}


def test_at_most_so_many_are_remembered(monkeypatch):
    monkeypatch.setattr(lists, "REMEMBER_LIMIT", 3)
    recent = lists.RecentVersions()
    for number in range(5):
        recent.remember({"id": f"jv_{number}", "version": 1, "owner": "Lahore Pharma"})
    assert set(recent.visible_to(INVESTOR, "venture")) == {"jv_2", "jv_3", "jv_4"}
