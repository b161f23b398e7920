"""Subcommands by area; each module adds its commands with ``register(main)``.

Kept apart so each area's commands can grow without touching the others.
"""

from . import producers, sinks, streams

AREAS = (producers, streams, sinks)
