"""Read-your-writes (docs/architecture.md §5.7): a command waits, bounded, until the
projection it needs has applied the sequence the caller read, woken by the change
stream on the projection's collection; past the bound it is a 503 with Retry-After."""

import json

import eventlet
import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from services.facilities.service import FacilitiesService
from services.gateway.problems import problem_headers, status_of
from shared.consistency import ProjectionWatch
from shared.errors import ServiceUnavailable
from shared.mongo import connect

from support import PLANT

INVESTOR = {"key_id": "key_1", "role": "investor", "owner": "Lahore Pharma Holdings"}
# The bound is at most half the RPC timeout: a short one keeps the waits that time out short.
RPC_TIMEOUT = 1.0


class Watching:
    name = "watching"
    views = ProjectionWatch("views", "thing")


@pytest.fixture
def config(service_config):
    return {**service_config, "JVREG_RPC_TIMEOUT_SECONDS": RPC_TIMEOUT}


def watch_of(container) -> ProjectionWatch:
    return next(d for d in container.dependencies if isinstance(d, ProjectionWatch))


@pytest.fixture
def watching(config, container_factory):
    """The watch of a service's `views` collection, and that collection to write to, as
    the consumer applying events writes it."""
    container = container_factory(Watching, config)
    container.start()
    client = connect(config["JVREG_MONGO_URI"])
    views = client[f"{config['JVREG_DB_PREFIX']}_watching"]["views"]
    yield watch_of(container), views
    client.close()


def reads_counted(watch: ProjectionWatch, then=None) -> list[int]:
    """Count the watch's reads of the projection (each one's answer), calling `then`
    right after the first read returns."""
    answers: list[int] = []
    read = watch.applied

    def counted(key: str) -> int:
        answers.append(read(key))
        if then is not None and len(answers) == 1:
            then()
        return answers[-1]

    watch.applied = counted  # type: ignore[method-assign]
    return answers


def test_a_wait_is_woken_by_the_change_that_applies_the_sequence(watching):
    watch, views = watching
    views.insert_one({"_id": "t1", "sequence": 1})
    reads = reads_counted(watch)
    waiting = eventlet.spawn(watch.wait_for, "t1", 3)
    eventlet.sleep(0.05)
    views.update_one({"_id": "t1"}, {"$set": {"sequence": 2}})
    eventlet.sleep(0.05)
    assert not waiting.dead  # 2 is not yet 3
    views.update_one({"_id": "t1"}, {"$set": {"sequence": 3}})
    assert waiting.wait() is True
    # One read, before waiting: the changes themselves said which sequence they applied.
    assert reads == [1]


def test_a_change_that_carries_no_sequence_makes_the_wait_read_again(watching):
    watch, views = watching
    views.insert_one({"_id": "t2", "sequence": 1, "count": 0})
    reads = reads_counted(watch)
    waiting = eventlet.spawn(watch.wait_for, "t2", 2)
    eventlet.sleep(0.05)
    views.update_one({"_id": "t2"}, {"$inc": {"count": 1}})
    eventlet.sleep(0.05)
    views.update_one({"_id": "t2"}, {"$set": {"sequence": 2}})
    assert waiting.wait() is True
    assert reads == [1, 1]


def test_what_is_applied_already_needs_no_wait(watching):
    watch, views = watching
    views.insert_one({"_id": "t3", "sequence": 4})
    assert watch.wait_for("t3", 3) is True
    assert watch.wait_for("unheard-of", 0) is True  # version 0: nothing to wait for


def test_a_change_landing_between_registering_and_reading_is_not_missed(watching):
    """The wait registers before it reads: an event applied right after the read (which
    still saw the old sequence) wakes it, however the two interleave."""
    watch, views = watching
    views.insert_one({"_id": "t4", "sequence": 1})
    reads_counted(watch, then=lambda: views.update_one({"_id": "t4"}, {"$set": {"sequence": 2}}))
    assert watch.wait_for("t4", 2) is True


def test_a_wait_ends_at_the_bound_and_the_command_is_a_503_with_retry_after(watching):
    watch, views = watching
    views.insert_one({"_id": "t5", "sequence": 1})
    assert watch.bound == RPC_TIMEOUT / 2
    assert watch.wait_for("t5", 2) is False
    with pytest.raises(ServiceUnavailable) as refused:
        watch.require("t5", 2)
    assert "not yet learned of thing t5 version 2" in refused.value.detail
    assert status_of(refused.value) == 503
    assert problem_headers(refused.value) == {"Retry-After": "1"}
    assert watch.waiters == {}  # nothing left registered


class TwoWatches:
    name = "watching"
    views = ProjectionWatch("views", "thing")
    others = ProjectionWatch("others", "other thing")


def test_at_most_half_the_workers_wait_at_once_whatever_they_wait_for(config, container_factory):
    """A wait holds a worker and its prefetch slot, which the consumer applying the
    awaited event needs too: beyond half of them, a command that would wait is refused."""
    container = container_factory(TwoWatches, {**config, "max_workers": 2})
    container.start()
    views, others = (d for d in container.dependencies if isinstance(d, ProjectionWatch))
    first = eventlet.spawn(views.wait_for, "t6", 1)
    eventlet.sleep(0.05)
    # The awaited change lands right after the read: a wait would see it, a refusal not.
    reads_counted(others, then=lambda: others.collection.insert_one({"_id": "t7", "sequence": 1}))
    assert others.wait_for("t7", 1) is False  # one of two workers waits already
    assert first.wait() is False  # at the bound
    assert others.wait_for("t7", 1) is True  # what is applied needs no slot


def test_facilities_refuses_a_plant_of_a_venture_it_cannot_learn_of_in_time(
    config, container_factory
):
    """A version of the venture no event has brought (or that a stopped consumer never
    applies): 503 with Retry-After, nothing written."""
    container = container_factory(FacilitiesService, config)
    container.start()
    with ServiceRpcProxy("facilities", config) as proxy:
        with pytest.raises(ServiceUnavailable) as refused:
            proxy.register_facility("jv_ahead", json.dumps(PLANT), INVESTOR, 7)
        assert "facilities service has not yet learned of venture jv_ahead version 7" in (
            refused.value.detail
        )
        assert problem_headers(refused.value) == {"Retry-After": "1"}
        assert proxy.list_facilities({"venture_id": "jv_ahead"}, None, 10) == []
        # A licence type plants do not follow needs no wait; a DML not heard of times out.
        assert proxy.caught_up_with_licence("lic_x", "gmp_certificate", 5) is True
        assert proxy.caught_up_with_licence("lic_x", "dml_basic", 5) is False
