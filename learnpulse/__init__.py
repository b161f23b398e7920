"""learnpulse: the command, settings, the local stack launcher and process wiring."""

__version__ = "0.1.0"
