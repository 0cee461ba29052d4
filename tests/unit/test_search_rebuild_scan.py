"""`jvreg search rebuild` reads each event log in one scan; a scan the server cuts off
(pymongo cancels what is in flight when the server does not answer for a moment) is
read again from the start, and what the rebuild keeps is the same."""

import pytest
from pymongo.errors import AutoReconnect

from ops.search import SCAN_ATTEMPTS, latest_changes
from services.search.settings import SearchSettings


def venture_event(subject: str, sequence: int, name: str) -> dict:
    return {
        "subject": subject,
        "sequence": sequence,
        "type": "jvreg.venture.registered" if sequence == 1 else "jvreg.venture.updated",
        "data": {"venture": {"id": subject, "name": name, "version": sequence}},
    }


class Log:
    """An event log whose scans fail after `fail_after` records, `failures` times."""

    def __init__(self, records: list[dict], failures: int = 0, fail_after: int = 2):
        self.records, self.failures, self.fail_after = records, failures, fail_after
        self.scans = 0

    def estimated_document_count(self) -> int:
        return len(self.records)

    def find(self, query, fields):
        self.scans += 1
        for number, record in enumerate(self.records):
            if self.failures and number == self.fail_after:
                self.failures -= 1
                raise AutoReconnect("operation cancelled")
            yield dict(record)


class Mongo:
    def __init__(self, logs: dict[str, Log]):
        self.logs = logs

    def __getitem__(self, database: str) -> dict:
        source = database.rsplit("_", 1)[-1]
        return {"event_log": self.logs.get(source, Log([]))}


def rebuilt(logs: dict[str, Log]):
    changes, events, gaps = latest_changes(Mongo(logs), SearchSettings(), None)
    return {c.id: (c.sequence, c.resource["name"]) for c in changes}, events, gaps


def test_a_scan_cut_off_is_read_again_and_keeps_the_same():
    records = [
        venture_event("jv_1", 1, "Indus Works"),
        venture_event("jv_2", 1, "Yangtze Labs"),
        venture_event("jv_1", 2, "Indus API Works"),
        venture_event("jv_2", 2, "Yangtze Formulations"),
    ]
    clean = rebuilt({"ventures": Log(records)})
    cut = Log(records, failures=SCAN_ATTEMPTS - 1)
    assert rebuilt({"ventures": cut}) == clean
    assert clean[0] == {"jv_1": (2, "Indus API Works"), "jv_2": (2, "Yangtze Formulations")}
    assert clean[1]["ventures"] == 4 and cut.scans == SCAN_ATTEMPTS


def test_a_scan_cut_off_every_time_fails_the_rebuild():
    records = [venture_event(f"jv_{n}", 1, f"Venture {n}") for n in range(5)]
    with pytest.raises(AutoReconnect):
        rebuilt({"ventures": Log(records, failures=SCAN_ATTEMPTS)})
