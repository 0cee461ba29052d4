"""What `jvreg reconcile` counts as a faithful projection."""

from decimal import Decimal

from ops.reconcile import mirrors

SOURCE = {
    "status": "active",
    "partners": [
        {"name": "Indus Pharma", "country": "PK", "equity_pct": Decimal("51")},
        {"name": "Yangtze Pharma", "country": "CN", "equity_pct": Decimal("49")},
    ],
}


def test_a_projection_may_keep_less_than_its_source():
    kept = {"status": "active", "partners": [{"country": "PK"}, {"country": "CN"}]}
    assert all(mirrors(kept[key], SOURCE[key]) for key in kept)


def test_a_changed_or_missing_value_is_drift():
    assert not mirrors("suspended", SOURCE["status"])
    assert not mirrors([{"country": "PK"}], SOURCE["partners"])  # a partner missing
    assert not mirrors([{"country": "CN"}, {"country": "PK"}], SOURCE["partners"])  # order
    assert not mirrors(
        [{"country": "PK", "board_seat": True}, {"country": "CN"}], SOURCE["partners"]
    )  # something the source never said
