"""A service that needs neither a broker nor a database, for the harness's own tests:
the launcher runs it as a real `nameko run` child, which is all they need."""

from nameko.timer import timer


class Idle:
    name = "idle"

    # nameko's SIGTERM handler only schedules the stop; it runs when the hub next
    # wakes, and with nothing else to wait for, the timer is what wakes it.
    @timer(interval=0.2)
    def tick(self) -> None:
        """Nothing to do: the process only has to run until it is stopped or killed."""
