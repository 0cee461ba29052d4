"""What every service's contract module (`services/<service>/contract.py`) is built from:
the event types of the registry by routing key (docs/architecture.md §4.1), the wire
types they share, and `Subscription`, how a consumer declares the events it takes from
another service.

A consumer refuses (dead-letters) a type not listed in EVENT_TYPES, or a payload its
producer's contract does not accept, instead of guessing at it."""

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

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
        "license.expiring",
        "license.renewed",
        "license.renewal_granted",
        "investment.recorded",
        "fx_rate.set",
    }
)


class Strict(BaseModel):
    """A request body or query: a field the contract does not name is refused."""

    model_config = ConfigDict(extra="forbid")


class Actor(BaseModel):
    """Who caused a change, as events and records name them: the API key (or a system
    actor such as the expiry sweep), its role and its organisation."""

    key_id: str
    role: str
    owner: str


class Change(BaseModel):
    """What every event's `change` says: why, and who."""

    model_config = ConfigDict(populate_by_name=True)

    reason: str
    actor: Actor


class StatusChange(Change):
    """A change of an aggregate's status; `from` is null when it came into being."""

    from_: str | None = Field(alias="from")
    to: str


class EventPayload(BaseModel):
    """The `data` of one event type: the aggregate it is about after the change, and
    the change. `service` publishes it and `routing_key` names its type; `subject` and
    `sequence` say which aggregate, and which of its changes, the event carries."""

    service: ClassVar[str]
    routing_key: ClassVar[str]
    # The field holding the aggregate after the change: by default its `id` is the
    # event's subject and its `version` the event's sequence.
    aggregate: ClassVar[str]

    @property
    def subject(self) -> str:
        return getattr(self, self.aggregate).id

    @property
    def sequence(self) -> int:
        return getattr(self, self.aggregate).version


def events_of(*payloads: type[EventPayload]) -> dict[str, type[BaseModel]]:
    """A contract's EVENTS: routing key -> payload model."""
    return {payload.routing_key: payload for payload in payloads}


def example(model: type[BaseModel]) -> dict[str, Any]:
    """The first example a model's schema carries (every payload model has one)."""
    extra = model.model_config.get("json_schema_extra")
    if not isinstance(extra, dict) or not extra.get("examples"):
        raise LookupError(f"{model.__name__} carries no example")
    first = extra["examples"]
    first = first[0] if isinstance(first, list) else None
    if not isinstance(first, dict):
        raise LookupError(f"{model.__name__}'s first example is not an object")
    return copy.deepcopy(first)  # the caller may change it; the schema's stays


# --- AMQP topic patterns --------------------------------------------------------------


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether `routing_key` matches `pattern` as a RabbitMQ topic binding would: `*`
    stands for exactly one word and `#` for zero or more.

    One pass over the key's words, carrying the set of pattern positions reached so
    far: at most (pattern words x key words) steps, whatever the pattern. (Trying
    every split of the key at each `#` instead takes exponential time on patterns
    like `#.#.#.#.x`.)"""
    pattern_words = pattern.split(".")
    reached = _past_hashes({0}, pattern_words)
    for word in routing_key.split("."):
        advanced = set()
        for position in reached:
            if position == len(pattern_words):
                continue  # the pattern is used up, yet words remain
            expected = pattern_words[position]
            if expected == "#":
                advanced.add(position)  # `#` takes this word and may take more
            elif expected in ("*", word):
                advanced.add(position + 1)
        reached = _past_hashes(advanced, pattern_words)
        if not reached:
            return False
    return len(pattern_words) in reached


def _past_hashes(positions: set[int], pattern_words: list[str]) -> set[int]:
    """`positions` and those reached from them by letting `#` stand for no word."""
    reached = set()
    for position in positions:
        reached.add(position)
        while position < len(pattern_words) and pattern_words[position] == "#":
            position += 1
            reached.add(position)
    return reached


# --- what a service consumes ----------------------------------------------------------


class PayloadRefused(ValueError):
    """An event's `data` that its producer's contract does not accept."""


@dataclass(frozen=True)
class Subscription:
    """One queue of a consuming service, bound to the `source` service's exchange with
    `pattern`: it takes the events of the producer's contract (`events()`, its EVENTS:
    routing key -> payload model) that `pattern` matches. `events` is read when first
    needed, since two services may consume each other's events: their contract modules
    import each other, and neither may read the other's attributes while importing."""

    queue: str
    source: str
    pattern: str
    events: Callable[[], Mapping[str, type[BaseModel]]] = field(repr=False)

    @cached_property
    def accepts(self) -> dict[str, type[BaseModel]]:
        """The producer's payload model of each routing key this subscription takes."""
        accepts = {
            routing_key: model
            for routing_key, model in self.events().items()
            if topic_matches(self.pattern, routing_key)
        }
        if not accepts:
            raise ValueError(f"{self.pattern} matches none of {self.source}'s events")
        return accepts

    def payload_of(self, routing_key: str, data: Mapping[str, Any]) -> BaseModel:
        """`data` as the producer's payload model of `routing_key` (pydantic's
        ValidationError when it is not one)."""
        model = self.accepts.get(routing_key)
        if model is None:
            raise PayloadRefused(f"{routing_key} is not an event that {self.queue} takes")
        return model.model_validate(data)
