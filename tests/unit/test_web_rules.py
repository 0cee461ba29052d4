"""The web pages' rules without a browser, broker or database: the charts' geometry,
the workbench's groups, the decision form as the API's body and its refusal placed on
the form's fields, and the templates' escaping."""

import json
from datetime import UTC, datetime, timedelta

from services.gateway.web import workbench
from services.gateway.web.charts import Series, bar_chart
from services.gateway.web.pages import TEMPLATES, money
from services.licensing.contract import RequestTransition
from shared.errors import Conflict, InvalidInput

COMMITTED, DISBURSED = Series("committed", "committed"), Series("disbursed", "disbursed")


def test_bars_are_as_long_as_their_figures_against_the_largest():
    chart = bar_chart(
        "c",
        "Investment",
        "by partner",
        "Partner",
        [COMMITTED, DISBURSED],
        [("Indus", ["1800000.00", "605094.44"]), ("Zhejiang", ["3600000.00", "-5.00"])],
    )
    indus, zhejiang = chart.rows
    full = zhejiang.bars[0].width
    assert indus.bars[0].width == full / 2
    assert zhejiang.bars[1].width == 0.0  # a negative figure draws no bar
    assert indus.bars[1].y == indus.bars[0].y + 16 and zhejiang.bars[0].y > indus.bars[1].y
    assert chart.height > zhejiang.bars[1].y


def test_a_chart_of_nothing_draws_nothing():
    chart = bar_chart("c", "t", "d", "Month", [DISBURSED], [("2025-01", ["0.00"])])
    assert chart.rows[0].bars[0].width == 0.0
    assert bar_chart("c", "t", "d", "Month", [DISBURSED], []).rows == []


def test_figures_are_shown_with_their_thousands_separated():
    assert money("3092500.00") == "3,092,500.00" and money("-687500.00") == "-687,500.00"


def test_the_workbench_shows_what_waited_longest_first():
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)

    def waiting(days: float) -> dict:
        return {"id": f"lic_{days}", "updated_at": (now - timedelta(days=days)).isoformat()}

    groups = workbench.by_age([waiting(40), waiting(10), waiting(8), waiting(1)], now)
    assert [(name, [a["id"] for a in items]) for name, items in groups] == [
        ("more than 4 weeks", ["lic_40"]),
        ("1 to 4 weeks", ["lic_10", "lic_8"]),
        ("less than a week", ["lic_1"]),
    ]


def test_the_feed_shows_decisions_only():
    licences = [
        {"id": str(n), "status": s} for n, s in enumerate(["submitted", "granted", "rejected"])
    ]
    assert [licence["id"] for licence in workbench.decisions(licences)] == ["1", "2"]


def test_the_decision_form_is_the_apis_request():
    assert set(workbench.DECISION_FIELDS) == set(RequestTransition.model_fields)
    form = {"to": "granted", "reason": " GMP ok ", "decision_ref": "DRAP/1", "valid_until": ""}
    body = workbench.decision_body({**form, "csrf_token": "t"})
    assert json.loads(body) == {"to": "granted", "reason": "GMP ok", "decision_ref": "DRAP/1"}


def test_a_refusal_is_placed_next_to_the_fields_it_names():
    missing = InvalidInput(
        "1 invalid field(s): decision_ref",
        [{"loc": ["decision_ref"], "msg": "required to move to granted", "type": "missing"}],
    )
    assert workbench.field_errors(missing) == {"decision_ref": "required to move to granted"}
    illegal = Conflict(
        "a submitted licence cannot become granted; allowed: under_review",
        extra={"current": "submitted", "allowed": ["under_review"]},
    )
    assert workbench.field_errors(illegal) == {"to": illegal.detail}


def test_what_users_typed_is_escaped_in_pages_and_charts():
    chart = bar_chart("c", "t", "d", "Partner", [COMMITTED], [("<script>x</script>", ["1"])])
    html = TEMPLATES.get_template("_macros.html").module.chart(chart)
    assert "<script>x" not in html and "&lt;script&gt;x" in html


def test_a_long_label_is_shortened_in_the_chart_only():
    name = "Zhejiang Yangtze Pharmaceutical Co."
    [row] = bar_chart("c", "t", "d", "Partner", [COMMITTED], [(name, ["1"])]).rows
    assert row.label == name and row.short_label == "Zhejiang Yangtze Pharmaceutic…"
