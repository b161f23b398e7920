"""HAProxy from Debian in front of several gateways (``learnpulse stack up --balancer``).

The configuration is ``deploy/haproxy/haproxy.cfg`` with the listening address and one
``server`` line per gateway filled in; health checks on ``/xapi/about`` take a dead gateway
out of rotation within ~2 s, and a request whose connection a dead gateway refused goes to
another one. The gateways must trust the balancer's ``X-Forwarded-For``
(``LEARNPULSE_GATEWAY__TRUSTED_PROXIES``) for their per-client limits.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import UserError
from .settings import Settings
from .stack import Service, port_open

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "haproxy" / "haproxy.cfg"


def render_config(template: str, bind: str, backends: list[str], prefix: str = "/xapi") -> str:
    """``template`` listening on ``bind``, balancing ``backends``, passing only paths under ``prefix``/."""
    if not backends:
        raise UserError("the balancer needs at least one gateway: set LEARNPULSE_BALANCER__BACKENDS or --backend")
    servers = "\n".join(f"    server gateway-{n} {address}" for n, address in enumerate(backends, start=1))
    return template.replace("@BIND@", bind).replace("@SERVERS@", servers).replace("@PREFIX@", prefix.rstrip("/"))


class Balancer(Service):
    def __init__(self, settings: Settings, backends: list[str] | None = None) -> None:
        b = settings.balancer
        super().__init__("haproxy", settings.home.resolve() / "haproxy", b.host, (b.port,))
        self.backends = list(backends if backends is not None else b.backends)
        self.prefix = settings.gateway.prefix

    @property
    def config(self) -> Path:
        return self.dir / "haproxy.cfg"

    def up(self, timeout: float = 30) -> str:
        if not self._prepare_start("haproxy", "haproxy"):
            return "already running"
        bind = f"{self.host}:{self.ports[0]}"
        self.config.write_text(render_config(TEMPLATE.read_text(), bind, self.backends, self.prefix))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise UserError(f"haproxy refused {self.config}: {(check.stdout + check.stderr).strip()[-400:]}")
        # -db: stay in the foreground (the pid file is ours); -W: master-worker, clean stops.
        self._spawn(["haproxy", "-W", "-db", "-f", str(self.config)])
        self._wait_ready(lambda: port_open(self.host, self.ports[0]), timeout)
        return "started"
