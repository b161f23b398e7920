"""The alert notifier command: ``learnpulse notify`` (learnpulse.alerts → webhooks, Alertmanager)."""

from __future__ import annotations

import json
import signal
import threading
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import click
from pydantic import ValidationError

from ..errors import UserError
from ..settings import NotifierSettings, Settings

# Offset from ``metrics_port_base`` of the notifier's /metrics port.
NOTIFY_METRICS = 6


def resolve_notifier_settings(s: NotifierSettings) -> NotifierSettings:
    """``s`` merged over its ``config_file``: the file first, then values that differ from the defaults.

    Webhooks of the file and of ``s`` are both used (file first).
    """
    if s.config_file is None:
        return s
    path = Path(s.config_file)
    try:
        raw = path.read_bytes()
        doc = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (OSError, ValueError) as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise UserError(f"notifier config file {path}: {err}") from err
    if not isinstance(doc, dict):
        raise UserError(f"notifier config file {path}: must hold an object/table of notifier settings")
    if "config_file" in doc:
        raise UserError(f"notifier config file {path}: config_file cannot name another file")
    try:
        base = NotifierSettings.model_validate(doc)
    except ValidationError as err:
        raise UserError(f"notifier config file {path}: {err}") from err
    defaults = NotifierSettings()
    merged = {}
    for name in NotifierSettings.model_fields:
        mine, theirs = getattr(s, name), getattr(base, name)
        if name == "webhooks":
            merged[name] = [*theirs, *mine]
        elif name == "config_file":
            merged[name] = mine
        else:
            merged[name] = mine if mine != getattr(defaults, name) else theirs
    return NotifierSettings.model_validate(merged)


def _check_url(url: str, what: str) -> str:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise UserError(f"{what}: {url!r} is not an http(s) URL")
    return url


def notifier_config(settings: Settings):
    """The :class:`sinks.notifier.NotifierConfig` these settings describe (UserError if none is usable)."""
    from schemas.topics import Topic
    from sinks.notifier import NotifierConfig, Target

    n = resolve_notifier_settings(settings.notifier)
    targets = []
    for i, w in enumerate(n.webhooks):
        secret = w.secret.get_secret_value().encode() if w.secret is not None else None
        targets.append(
            Target(
                name=w.name or f"webhook-{i}",
                kind="webhook",
                url=_check_url(w.url, f"webhook {w.name or i}"),
                secret=secret or None,
                schools=frozenset(w.schools),
                timeout_s=n.timeout_s,
                max_learners=w.max_learners,
            )
        )
    if n.alertmanager_url:
        targets.append(
            Target(
                name="alertmanager",
                kind="alertmanager",
                url=_check_url(n.alertmanager_url, "alertmanager_url"),
                schools=frozenset(n.alertmanager_schools),
                timeout_s=n.timeout_s,
            )
        )
    if not targets:
        raise UserError(
            "no alert targets: set LEARNPULSE_NOTIFIER__WEBHOOKS, LEARNPULSE_NOTIFIER__ALERTMANAGER_URL "
            "or LEARNPULSE_NOTIFIER__CONFIG_FILE"
        )
    k = settings.kafka
    try:
        return NotifierConfig(
            bootstrap=k.bootstrap_servers,
            topic=Topic.ALERTS.physical(k.topic_prefix),
            group_id=f"{k.topic_prefix}learnpulse-notifier",
            deadletter_topic=Topic.DEADLETTER.physical(k.topic_prefix),
            targets=tuple(targets),
            severity=n.severity,
            retry_initial_s=n.retry_initial_s,
            retry_max_s=n.retry_max_s,
            resend_s=n.alertmanager_resend_s,
        )
    except ValueError as err:
        raise UserError(f"notifier settings: {err}") from err


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.command()
    @click.pass_obj
    def notify(settings: Settings) -> None:
        """Deliver cohort alerts (learnpulse.alerts) to webhooks and Alertmanager until stopped.

        Targets come from LEARNPULSE_NOTIFIER__* or a config file (see README, "Alerts").
        """
        from sinks.errors import DeadLetterStorm
        from sinks.notifier import AlertNotifier, redact

        from ..pipeline import serve_metrics

        config = notifier_config(settings)
        port = settings.metrics_port_for(NOTIFY_METRICS)
        serve_metrics(port, settings.bind_host)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        targets = ", ".join(f"{t.name} ({redact(t.url)})" for t in config.targets)
        click.echo(f"notify: {config.topic} → {targets}; metrics on :{port}/metrics", err=True)
        try:
            AlertNotifier(config).run(stop)
        except DeadLetterStorm as err:
            raise UserError(str(err)) from err
