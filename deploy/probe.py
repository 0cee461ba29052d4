"""Is this container's registry process connected? Exit 0 when the container holds an
established TCP connection to every given remote port, 1 (saying which) otherwise:

    python deploy/probe.py 5672 27017     # RabbitMQ and MongoDB

The healthcheck of compose's consumers and the probes of their Kubernetes pods
(docs/deploy.md). Why not the services' `ping` RPC: it goes through the service's
shared queue, so any instance answers it, and a dead pod would be reported alive by
its siblings. Connections are per container (its network namespace), cost no round
trip, and a nameko service holds its broker connection and its MongoDB client's
monitoring connections for as long as it runs."""

import sys

import psutil


def connected_ports() -> set[int]:
    """The remote ports of this network namespace's established TCP connections."""
    return {
        connection.raddr.port
        for connection in psutil.net_connections(kind="tcp")
        if connection.status == psutil.CONN_ESTABLISHED and connection.raddr
    }


def main(ports: list[str]) -> int:
    if missing := sorted({int(port) for port in ports} - connected_ports()):
        print("no established connection to port(s) " + ", ".join(map(str, missing)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
