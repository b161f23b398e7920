"""No silent default secret: left at the published default, the pseudonym key is a random one
made once per home (0600) and announced; a configured secret is used as it is."""

from __future__ import annotations

import logging

from pydantic import SecretStr

from learnpulse.local_secrets import PSEUDONYM_SECRET_FILE, pseudonym_key
from learnpulse.settings import DEFAULT_PSEUDONYM_SECRET, Settings
from schemas.identity import pseudonym


def test_default_pseudonym_secret_is_never_used_a_random_one_is_made_once(tmp_path, caplog):
    settings = Settings(home=tmp_path / "home")
    assert settings.pseudonym_secret.get_secret_value() == DEFAULT_PSEUDONYM_SECRET
    with caplog.at_level(logging.WARNING, logger="learnpulse.secrets"):
        key = pseudonym_key(settings)
    assert key != DEFAULT_PSEUDONYM_SECRET.encode() and len(key) >= 32
    path = tmp_path / "home" / PSEUDONYM_SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert str(path) in caplog.text
    # The same home gives the same key (every process of one installation agrees) …
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="learnpulse.secrets"):
        assert pseudonym_key(Settings(home=tmp_path / "home")) == key
    assert caplog.text == ""
    # … another home another one; and a known mbox no longer maps to the demo pseudonym.
    assert pseudonym_key(Settings(home=tmp_path / "other")) != key
    agent = {"mbox": "mailto:ana@example.org"}
    assert pseudonym(key, agent) != pseudonym(DEFAULT_PSEUDONYM_SECRET.encode(), agent)


def test_configured_pseudonym_secret_is_used_as_given(tmp_path):
    settings = Settings(home=tmp_path / "home", pseudonym_secret=SecretStr("s3cret-of-this-deployment"))
    assert pseudonym_key(settings) == b"s3cret-of-this-deployment"
    assert not (tmp_path / "home" / PSEUDONYM_SECRET_FILE).exists()
