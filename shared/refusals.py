"""One log line per expected answer. nameko logs every expected error of a worker (our
RegistryError: 401, 403, 404, 409, 422, 429, a 503 "not yet learned of it", …; an event
held back until its predecessor is applied) at WARNING *with its traceback*, so each
refusal wrote a dozen lines of stack in the gateway and again in the service that
refused; a refusal is an answer, and an early event waits its turn: neither is a
failure. Installed on the log handler of every service by deploy/config.yaml."""

import logging
from typing import cast

from nameko.containers import WorkerContext
from werkzeug.wrappers import Request

from shared.errors import RegistryError
from shared.inbox import EventNotYetApplicable

# The logger and message of nameko's `(expected) error handling worker …` records.
NAMEKO_WORKERS = "nameko.containers"
log = logging.getLogger(__name__)


def log_refusal(request: Request, error: RegistryError) -> None:
    """The line of a request the gateway refuses before a worker takes it."""
    log.info("refused %s: %s %s", who_asked(request), error.status, error.detail)


def who_asked(request: Request) -> str:
    return f"{request.method} {request.path} from {request.remote_addr}"


class OneLineRefusals(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        args = record.args if isinstance(record.args, tuple) else ()
        if record.name != NAMEKO_WORKERS or len(args) != 2:
            return True
        # nameko's `(expected) error handling worker %s: %s` % (worker_ctx, error)
        worker_ctx = cast(WorkerContext, args[0])
        if isinstance(error, RegistryError):
            request = next((a for a in worker_ctx.args if isinstance(a, Request)), None)
            what = who_asked(request) if request is not None else worker_ctx.entrypoint.method_name
            record.msg = "refused %s: %s %s"
            record.args = (what, error.status, error.detail)
        elif isinstance(error, EventNotYetApplicable):
            # Sent to the tail of its queue and applied once its turn comes.
            record.msg = "held back by %s: %s"
            record.args = (worker_ctx.entrypoint.method_name, error)
            record.levelno, record.levelname = logging.INFO, "INFO"
        else:
            return True
        record.exc_info = record.exc_text = None
        return True
