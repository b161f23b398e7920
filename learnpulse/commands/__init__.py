"""Subcommands by area; each module adds its commands with ``register(main)``.

Kept apart so each area's commands can grow without touching the others.
"""

from . import capacity, gateway, mastery, notify, operators, producers, quarantine, reporting, sinks, streams, supervise

AREAS = (producers, streams, mastery, sinks, reporting, operators, gateway, notify, quarantine, supervise, capacity)
