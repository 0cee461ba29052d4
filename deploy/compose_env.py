"""Write the secrets `docker compose` needs into a `.env` file (default: ./.env),
generating each one that is missing and keeping those already there: the bootstrap
ops key, the RabbitMQ administrator's password and every broker user's password.
`make up` runs it, so the stack never starts with a well-known or empty secret."""

import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ops.broker import password_variable  # noqa: E402
from shared import messaging  # noqa: E402


def wanted() -> dict[str, str]:
    """Each secret's variable and a fresh value for it (used only when it is missing)."""
    fresh = {
        "JVREG_OPS_KEY": "jvk_ops_" + secrets.token_urlsafe(32),
        "JVREG_BROKER_ADMIN_PASSWORD": secrets.token_urlsafe(24),
    }
    for name in (*messaging.SERVICES, messaging.OPS):
        fresh[password_variable(name)] = secrets.token_urlsafe(24)
    return fresh


def main(path: Path) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    present = {line.split("=", 1)[0].strip() for line in lines if "=" in line}
    added = [f"{name}={value}" for name, value in wanted().items() if name not in present]
    if added:
        path.touch(mode=0o600)
        path.write_text("\n".join([*lines, *added]) + "\n")
        path.chmod(0o600)
        print(
            f"{path}: generated {len(added)} secret(s): "
            + ", ".join(line.split("=", 1)[0] for line in added)
        )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".env"))
