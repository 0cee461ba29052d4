"""The trivial nameko service of the RPC raw limit: answers at once, touches nothing.
Run by `nameko run --config deploy/config.yaml echo` (tests/bench on PYTHONPATH), so it
has the registry services' workers and RPC entrypoint."""

from shared.entrypoints import rpc


class BenchEcho:
    name = "bench_echo"

    @rpc
    def ping(self):
        return "pong"
