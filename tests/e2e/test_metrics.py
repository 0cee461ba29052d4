"""/metrics on the running registry: the gateway's requests per route and status, and
each service's figures (outbox backlog, queues, instances), a stopped service shown
as down without failing the scrape."""

from ops.processes import wait_until

from support import created, sample_value, scrape, venture_body

PUBLISHERS = ("ventures", "facilities", "licensing", "investments")
BACKENDS = (*PUBLISHERS, "notifications", "search")


def requests_of(samples: dict, method: str, route: str, status: str) -> float:
    count = "jvreg_http_request_duration_seconds_count"
    return sample_value(samples, count, method=method, route=route, status=status) or 0


def test_metrics_are_for_ops_only(investor, regulator):
    # Without a key it is 401 (the authorisation matrix): not asked here, where failed
    # authentications of the whole session count towards one address's limit.
    assert investor.get("/metrics").status_code == 403
    assert regulator.get("/metrics").status_code == 403


def test_requests_are_counted_per_route_template_and_status(ops, investor):
    venture = created(investor, "/v1/ventures", venture_body())
    route = "/v1/ventures/<venture_id>"
    before = scrape(ops)
    for _ in range(3):
        assert investor.get(f"/v1/ventures/{venture['id']}").status_code == 200
    assert investor.get("/v1/ventures/jv_000000000000000000000000").status_code == 404
    assert investor.get("/no/such/route").status_code == 404
    after = scrape(ops)

    assert requests_of(after, "GET", route, "200") - requests_of(before, "GET", route, "200") == 3
    assert requests_of(after, "GET", route, "404") - requests_of(before, "GET", route, "404") == 1
    assert requests_of(after, "GET", "unmatched", "404") > requests_of(
        before, "GET", "unmatched", "404"
    )
    # A raw path is never a label: one series per route, whatever the ids.
    raw_path = ("route", f"/v1/ventures/{venture['id']}")
    assert not [labels for _, labels in after if raw_path in labels]
    bucket = sample_value(
        after,
        "jvreg_http_request_duration_seconds_bucket",
        method="GET",
        route=route,
        status="200",
        le="+Inf",
    )
    assert bucket == requests_of(after, "GET", route, "200")


def test_every_service_reports_its_figures(ops, investor):
    created(investor, "/v1/ventures", venture_body())  # something for every consumer
    samples = scrape(ops)

    for service in BACKENDS:
        assert sample_value(samples, "jvreg_service_up", service=service) == 1, service
        assert sample_value(samples, "jvreg_service_instances", service=service) == 1, service
    for service in PUBLISHERS:
        assert sample_value(samples, "jvreg_outbox_pending_events", service=service) is not None, (
            service
        )
    assert sample_value(samples, "jvreg_outbox_pending_events", service="notifications") is None
    # Every consumer queue, with its consuming service: depth, consumers, oldest event.
    for queue, service in (
        ("facilities.follow_venture", "facilities"),
        ("licensing.follow_facility", "licensing"),
        ("investments.project_venture", "investments"),
        ("notifications.queue_webhook_deliveries", "notifications"),
        ("ventures.event-log", "ventures"),
    ):
        labels = {"queue": queue, "service": service}
        assert sample_value(samples, "jvreg_queue_messages", **labels) is not None, queue
        assert sample_value(samples, "jvreg_queue_consumers", **labels) == 1, queue
        assert sample_value(samples, "jvreg_queue_oldest_message_age_seconds", **labels) >= 0, queue
    search_queues = {
        dict(labels)["queue"]
        for name, labels in samples
        if name == "jvreg_queue_messages" and dict(labels)["service"] == "search"
    }
    assert len(search_queues) == 3 and all(q.startswith("search.") for q in search_queues)
    assert sample_value(samples, "jvreg_dead_letters") is not None
    assert sample_value(samples, "jvreg_broker_up") == 1
    for outcome in ("pending", "retrying", "delivered", "failed", "cancelled"):
        assert sample_value(samples, "jvreg_webhook_deliveries", outcome=outcome) is not None


def test_a_stopped_service_is_down_and_its_queue_fills_while_the_scrape_answers(
    registry, ops, investor
):
    investments = registry["stack"].processes["investments"]
    queue = {"queue": "investments.project_venture", "service": "investments"}
    investments.stop()
    try:
        wait_until(
            lambda: (
                sample_value(scrape(ops), "jvreg_service_instances", service="investments") == 0
            ),
            30,
            "the stopped instance's consumer gone",
        )
        created(investor, "/v1/ventures", venture_body())  # an event it will miss for now
        wait_until(
            lambda: sample_value(scrape(ops), "jvreg_queue_messages", **queue) >= 1,
            30,
            "the venture's event waiting for investments",
        )
        samples = scrape(ops)
        assert sample_value(samples, "jvreg_service_up", service="investments") == 0
        assert sample_value(samples, "jvreg_queue_consumers", **queue) == 0
        assert sample_value(samples, "jvreg_service_up", service="ventures") == 1
    finally:
        investments.start()
    registry["stack"].wait_healthy(90)
    wait_until(
        lambda: sample_value(scrape(ops), "jvreg_queue_messages", **queue) == 0,
        60,
        "investments catching up",
    )
    assert sample_value(scrape(ops), "jvreg_service_up", service="investments") == 1
