"""Events the investments service publishes to `investments.events` (routing key = type),
and the ventures events it consumes to know each venture's partners and status."""

from decimal import Decimal

from services.investments.domain import Flow, FxRate
from shared.envelope import CloudEvent, new_event

SERVICE = "investments"
INVESTMENT_RECORDED = "investment.recorded"
FX_RATE_SET = "fx_rate.set"

# Consumed: every change of a venture carries the whole venture after it.
VENTURES_SERVICE = "ventures"
VENTURE_EVENTS = "venture.#"


def investment_recorded(flow: Flow) -> CloudEvent:
    """A flow is never changed after it is recorded: its own aggregate, sequence 1."""
    return new_event(
        SERVICE,
        INVESTMENT_RECORDED,
        subject=flow.id,
        sequence=1,
        data={
            "investment": flow.model_dump(mode="json"),
            "change": {"reason": "recorded", "actor": flow.recorded_by.model_dump()},
        },
    )


def fx_rate_set(subject: str, rate: FxRate, previous: Decimal | None, actor: dict) -> CloudEvent:
    """Subject `fx:<currency>:<date>`, one aggregate per currency and day; `sequence` is
    the rate's version, +1 each time that day's rate is changed."""
    return new_event(
        SERVICE,
        FX_RATE_SET,
        subject=subject,
        sequence=rate.version,
        data={
            "fx_rate": rate.model_dump(mode="json"),
            "change": {
                "from": str(previous) if previous is not None else None,
                "to": str(rate.usd_per_unit),
                "actor": actor,
            },
        },
    )
