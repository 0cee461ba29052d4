"""One worked example of investment flows: two ventures of one investor, flows from
Pakistani and Chinese partners in PKR, CNY and USD (a commitment reduction among them),
and rates set on several dates. The unit tests feed it to the report arithmetic, the
integration tests through the service and its report totals, the end-to-end tests
through the gateway; docs/investments.md shows it.

Every expected figure below was computed by hand (with `bc`, the products written out
beside it), never by the code under test. Rates in force (the most recent on or before
the value date): PKR 0.0036 from 2025-01-01, 0.00357 from 2025-03-01; CNY 0.1390 from
2025-01-01, 0.1375 from 2025-04-01.
"""

from collections import defaultdict
from datetime import date
from decimal import Decimal

from support import venture_body

RATES = [
    ("PKR", "2025-01-01", "0.0036"),
    ("PKR", "2025-03-01", "0.00357"),
    ("CNY", "2025-01-01", "0.1390"),
    ("CNY", "2025-04-01", "0.1375"),
]

INDUS, ZHEJIANG = "Indus Pharma (Pvt) Ltd", "Zhejiang Yangtze Pharmaceutical Co."
LAHORE, QILU = "Lahore Formulations Ltd", "Shandong Qilu Pharma Co."
COUNTRY = {INDUS: "PK", ZHEJIANG: "CN", LAHORE: "PK", QILU: "CN"}


def venture_a(name: str | None = None) -> dict:
    """API manufacturing in Khyber Pakhtunkhwa: Indus (PK) and Zhejiang (CN)."""
    return venture_body(name)


def venture_b(name: str | None = None) -> dict:
    """Finished formulations in Punjab: Lahore Formulations (PK) and Shandong Qilu (CN)."""
    return venture_body(
        name,
        sector="finished_formulations",
        province="punjab",
        partners=[
            {"name": LAHORE, "country": "PK", "kind": "private_company", "equity_pct": "60"},
            {"name": QILU, "country": "CN", "kind": "state_owned_enterprise", "equity_pct": "40"},
        ],
    )


def flow(type_, partner, amount, currency, value_date, reference=None) -> dict:
    body = {
        "type": type_,
        "partner": partner,
        "amount": amount,
        "currency": currency,
        "value_date": value_date,
    }
    if reference:
        body["reference"] = reference
    return body


# In recording order; the USD value of each flow at the rate in force on its value date.
FLOWS_A = [
    flow("commitment", INDUS, "500000000.00", "PKR", "2025-01-15", "JVA-2025-001"),
    # 500000000.00 x 0.0036 = 1800000.00
    flow("commitment", ZHEJIANG, "20000000.00", "CNY", "2025-01-20"),
    # 20000000.00 x 0.1390 = 2780000.00
    flow("commitment", ZHEJIANG, "1000000.00", "USD", "2025-02-01"),
    flow("disbursement", INDUS, "123456789.55", "PKR", "2025-02-10"),
    # 123456789.55 x 0.0036 = 444444.44238
    flow("disbursement", ZHEJIANG, "8000000.00", "CNY", "2025-03-05"),
    # 8000000.00 x 0.1390 = 1112000.00 (the 2025-04-01 rate is later)
    flow("equity_purchase", INDUS, "10000000.00", "PKR", "2025-03-20"),
    # 10000000.00 x 0.00357 = 35700.00
    flow("disbursement", INDUS, "45000000.25", "PKR", "2025-03-31"),
    # 45000000.25 x 0.00357 = 160650.0008925
    flow("commitment", ZHEJIANG, "-5000000.00", "CNY", "2025-04-01", "reduction"),
    # -5000000.00 x 0.1375 = -687500.00
    flow("disbursement", ZHEJIANG, "250000.75", "USD", "2025-04-15"),
    flow("loan", ZHEJIANG, "1234567.89", "CNY", "2025-04-15"),
    # 1234567.89 x 0.1375 = 169753.084875
]

FLOWS_B = [
    flow("commitment", LAHORE, "80000000.00", "PKR", "2025-02-20"),
    # 80000000.00 x 0.0036 = 288000.00
    flow("disbursement", LAHORE, "12345662.50", "PKR", "2025-02-25"),
    # 12345662.50 x 0.0036 = 44444.385: exactly half a cent
    flow("commitment", QILU, "500000.00", "USD", "2025-05-05"),
    flow("loan", QILU, "300000.00", "CNY", "2025-05-20"),
    # 300000.00 x 0.1375 = 41250.00
    flow("loan_repayment", QILU, "50000.00", "CNY", "2025-06-10"),
    # 50000.00 x 0.1375 = 6875.00
    flow("equity_sale", LAHORE, "1000000.00", "PKR", "2025-06-15"),
    # 1000000.00 x 0.00357 = 3570.00
    flow("disbursement", QILU, "120000.00", "USD", "2025-06-30"),
]


def figures(
    committed,
    disbursed,
    outstanding,
    ratio,
    equity_purchases="0.00",
    equity_sales="0.00",
    loans="0.00",
    loan_repayments="0.00",
) -> dict:
    return {
        "committed": committed,
        "disbursed": disbursed,
        "outstanding": outstanding,
        "disbursement_ratio": ratio,
        "equity_purchases": equity_purchases,
        "equity_sales": equity_sales,
        "loans": loans,
        "loan_repayments": loan_repayments,
    }


# Venture A in USD.
# Indus: committed 1800000.00; disbursed 444444.44238 + 160650.0008925 = 605094.4432725;
# outstanding 1194905.5567275; ratio 605094.4432725 / 1800000 = 0.336163...
INDUS_USD = figures("1800000.00", "605094.44", "1194905.56", "0.3362", equity_purchases="35700.00")
# Zhejiang: committed 2780000 + 1000000 - 687500 = 3092500.00; disbursed 1112000 + 250000.75
# = 1362000.75; outstanding 1730499.25; ratio 0.440420...; loans 169753.084875
ZHEJIANG_USD = figures("3092500.00", "1362000.75", "1730499.25", "0.4404", loans="169753.08")
# Total: committed 4892500; disbursed 605094.4432725 + 1362000.75 = 1967095.1932725;
# outstanding 2925404.8067275; ratio 0.402063...
VENTURE_A_USD = {
    "currency": "USD",
    "total": figures(
        "4892500.00",
        "1967095.19",
        "2925404.81",
        "0.4021",
        equity_purchases="35700.00",
        loans="169753.08",
    ),
    "by_partner": [
        {"partner": INDUS, "country": "PK", **INDUS_USD},
        {"partner": ZHEJIANG, "country": "CN", **ZHEJIANG_USD},
    ],
    "by_currency": [
        {
            # 20000000 - 5000000 = 15000000 committed; 8000000 / 15000000 = 0.5333...
            "currency": "CNY",
            "original": figures(
                "15000000.00", "8000000.00", "7000000.00", "0.5333", loans="1234567.89"
            ),
            # 2780000 - 687500 = 2092500; 1112000 / 2092500 = 0.531421...
            "converted": figures(
                "2092500.00", "1112000.00", "980500.00", "0.5314", loans="169753.08"
            ),
        },
        {
            # 123456789.55 + 45000000.25 = 168456789.80; / 500000000 = 0.33691357...
            "currency": "PKR",
            "original": figures(
                "500000000.00",
                "168456789.80",
                "331543210.20",
                "0.3369",
                equity_purchases="10000000.00",
            ),
            "converted": INDUS_USD,
        },
        {
            # 250000.75 / 1000000 = 0.25000075
            "currency": "USD",
            "original": figures("1000000.00", "250000.75", "749999.25", "0.2500"),
            "converted": figures("1000000.00", "250000.75", "749999.25", "0.2500"),
        },
    ],
}

# Venture B in USD: committed 288000 + 500000 = 788000; disbursed 44444.385 + 120000 =
# 164444.385, half a cent: to even gives .38 (half-up would give .39); outstanding
# 623555.615 gives .62; ratio 164444.385 / 788000 = 0.208685...
VENTURE_B_TOTAL_USD = figures(
    "788000.00",
    "164444.38",
    "623555.62",
    "0.2087",
    equity_sales="3570.00",
    loans="41250.00",
    loan_repayments="6875.00",
)

# Both ventures: committed 4892500 + 788000 = 5680500; disbursed 1967095.1932725 +
# 164444.385 = 2131539.5782725; outstanding 3548960.4217275; ratio 0.375238...;
# loans 169753.084875 + 41250 = 211003.084875
PORTFOLIO_TOTAL_USD = figures(
    "5680500.00",
    "2131539.58",
    "3548960.42",
    "0.3752",
    equity_purchases="35700.00",
    equity_sales="3570.00",
    loans="211003.08",
    loan_repayments="6875.00",
)
# Groups per venture (sector, province): A's total and B's total.
BY_SECTOR = [
    {"group": "api_manufacturing", **VENTURE_A_USD["total"]},
    {"group": "finished_formulations", **VENTURE_B_TOTAL_USD},
]
BY_PROVINCE = [
    {"group": "khyber_pakhtunkhwa", **VENTURE_A_USD["total"]},
    {"group": "punjab", **VENTURE_B_TOTAL_USD},
]
BY_PARTNER_COUNTRY = [
    # Zhejiang + Qilu: committed 3092500 + 500000 = 3592500; disbursed 1362000.75 + 120000
    # = 1482000.75; ratio 0.412526...
    {
        "group": "CN",
        **figures(
            "3592500.00",
            "1482000.75",
            "2110499.25",
            "0.4125",
            loans="211003.08",
            loan_repayments="6875.00",
        ),
    },
    # Indus + Lahore: committed 1800000 + 288000 = 2088000; disbursed 605094.4432725 +
    # 44444.385 = 649538.8282725; outstanding 1438461.1717275; ratio 0.311081...
    {
        "group": "PK",
        **figures(
            "2088000.00",
            "649538.83",
            "1438461.17",
            "0.3111",
            equity_purchases="35700.00",
            equity_sales="3570.00",
        ),
    },
]
PORTFOLIO_GROUPS = {
    "sector": BY_SECTOR,
    "province": BY_PROVINCE,
    "partner_country": BY_PARTNER_COUNTRY,
}
MONTHLY_DISBURSEMENTS_USD = [
    {"month": "2025-02", "disbursed": "488888.83"},  # 444444.44238 + 44444.385
    {"month": "2025-03", "disbursed": "1272650.00"},  # 160650.0008925 + 1112000
    {"month": "2025-04", "disbursed": "250000.75"},
    {"month": "2025-05", "disbursed": "0.00"},  # no disbursement, the series has no gap
    {"month": "2025-06", "disbursed": "120000.00"},
]


def day_totals(flows: list[dict], group_of) -> list[tuple]:
    """The flows summed per (group, currency, value date) and type, as the report
    totals sum them: [(group, currency, date, {type: Decimal})]."""
    sums: dict[tuple, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for body in flows:
        key = (group_of(body), body["currency"], date.fromisoformat(body["value_date"]))
        sums[key][body["type"]] += Decimal(body["amount"])
    return [(*key, dict(by_type)) for key, by_type in sums.items()]
