"""One log line per refused request. nameko logs every expected error of a worker (our
RegistryError: 401, 403, 404, 409, 422, 429, …) at WARNING *with its traceback*, so each
refusal wrote a dozen lines of stack in the gateway and again in the service that
refused; a refusal is an answer, not a failure. Installed on the log handler of every
service by deploy/config.yaml."""

import logging

from werkzeug.wrappers import Request

from shared.errors import RegistryError

# The logger and message of nameko's `(expected) error handling worker …` records.
NAMEKO_WORKERS = "nameko.containers"


class OneLineRefusals(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        worker_error = record.name == NAMEKO_WORKERS and len(record.args or ()) == 2
        if worker_error and isinstance(error, RegistryError):
            worker_ctx = record.args[0]
            request = next((a for a in worker_ctx.args if isinstance(a, Request)), None)
            what = (
                f"{request.method} {request.path} from {request.remote_addr}"
                if request is not None
                else worker_ctx.entrypoint.method_name
            )
            record.msg = "refused %s: %s %s"
            # An HTTP entrypoint names the refusal's status; an RPC's has none.
            kind = getattr(worker_ctx.entrypoint, "status_of", lambda error: type(error).__name__)
            record.args = (what, kind(error), error.detail)
            record.exc_info = record.exc_text = None
        return True
