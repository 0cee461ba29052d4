"""The event types of the registry's contract (docs/architecture.md §4.1), by routing key. A
consumer refuses (dead-letters) a type not listed here instead of guessing at it."""

EVENT_TYPES = frozenset(
    {
        "venture.registered",
        "venture.updated",
        "venture.status_changed",
        "facility.registered",
        "facility.status_changed",
        "license.submitted",
        "license.under_review",
        "license.deferred",
        "license.inspection_scheduled",
        "license.granted",
        "license.rejected",
        "license.suspended",
        "license.reinstated",
        "license.revoked",
        "license.expired",
        "license.renewed",
        "investment.recorded",
        "fx_rate.set",
    }
)
