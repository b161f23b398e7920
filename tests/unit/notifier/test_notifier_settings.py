"""Notifier settings: environment, config files (JSON/TOML), and the targets built from them."""

from __future__ import annotations

import json

import pytest

from learnpulse.commands.notify import notifier_config, resolve_notifier_settings
from learnpulse.errors import UserError
from learnpulse.settings import KafkaSettings, NotifierSettings, Settings, WebhookSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("LEARNPULSE_"):
            monkeypatch.delenv(name)


def test_notifier_settings_from_environment(monkeypatch):
    monkeypatch.setenv(
        "LEARNPULSE_NOTIFIER__WEBHOOKS",
        json.dumps([{"url": "http://a/hook", "secret": "s1", "schools": ["school-001"]}, {"url": "https://b/x"}]),
    )
    monkeypatch.setenv("LEARNPULSE_NOTIFIER__ALERTMANAGER_URL", "http://am:9093")
    monkeypatch.setenv("LEARNPULSE_NOTIFIER__SEVERITY", "page")
    monkeypatch.setenv("LEARNPULSE_KAFKA__TOPIC_PREFIX", "x.")
    cfg = notifier_config(Settings())
    assert [(t.name, t.kind, t.url) for t in cfg.targets] == [
        ("webhook-0", "webhook", "http://a/hook"),
        ("webhook-1", "webhook", "https://b/x"),
        ("alertmanager", "alertmanager", "http://am:9093"),
    ]
    assert cfg.targets[0].secret == b"s1" and cfg.targets[0].schools == frozenset({"school-001"})
    assert cfg.targets[1].secret is None and cfg.targets[1].schools == frozenset()
    assert cfg.severity == "page"
    assert (cfg.topic, cfg.group_id, cfg.deadletter_topic) == (
        "x.learnpulse.alerts",
        "x.learnpulse-notifier",
        "x.xapi.deadletter",
    )


def test_notifier_settings_survive_to_env_for_child_processes(monkeypatch):
    s = Settings(
        kafka=KafkaSettings(topic_prefix="t."),
        notifier=NotifierSettings(
            webhooks=[WebhookSettings(url="http://h/x", secret="k", schools=["s1", "s2"], name="staff")],
            alertmanager_url="http://am",
            alertmanager_schools=["s1"],
        ),
    )
    for name, value in s.to_env().items():
        monkeypatch.setenv(name, value)
    again = Settings()
    assert again.notifier.webhooks[0].secret.get_secret_value() == "k"
    assert again.notifier.model_dump(mode="json") == s.notifier.model_dump(mode="json")
    assert again.kafka.topic_prefix == "t."


def test_notifier_settings_file_json_with_environment_overrides(tmp_path):
    f = tmp_path / "notifier.json"
    f.write_text(json.dumps({"webhooks": [{"url": "http://file/x", "name": "file"}], "severity": "info",
                             "alertmanager_url": "http://am-file"}))  # fmt: skip
    env = NotifierSettings(config_file=f, severity="page", webhooks=[WebhookSettings(url="http://env/x", name="env")])
    merged = resolve_notifier_settings(env)
    assert [w.name for w in merged.webhooks] == ["file", "env"]
    assert merged.severity == "page"  # set in the environment: overrides the file
    assert merged.alertmanager_url == "http://am-file"  # left at its default: the file's value


def test_notifier_settings_file_toml(tmp_path):
    f = tmp_path / "notifier.toml"
    f.write_text(
        'alertmanager_url = "http://am:9093"\nretry_max_s = 5\n\n'
        '[[webhooks]]\nurl = "http://h/x"\nsecret = "k"\nschools = ["school-002"]\n'
    )
    cfg = notifier_config(Settings(notifier=NotifierSettings(config_file=f)))
    assert [t.name for t in cfg.targets] == ["webhook-0", "alertmanager"]
    assert cfg.targets[0].secret == b"k" and cfg.targets[0].schools == frozenset({"school-002"})
    assert cfg.retry_max_s == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "notifier config file"),
        ('{"webhooks": [{"secret": "no url"}]}', "url"),
        ('{"config_file": "other.json"}', "cannot name another file"),
        ("[]", "must hold an object"),
    ],
)
def test_notifier_settings_bad_file_is_a_clear_error(tmp_path, content, message):
    f = tmp_path / "n.json"
    f.write_text(content)
    with pytest.raises(UserError, match=message):
        notifier_config(Settings(notifier=NotifierSettings(config_file=f)))


def test_notifier_settings_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="notifier config file"):
        notifier_config(Settings(notifier=NotifierSettings(config_file=tmp_path / "absent.json")))


def test_notifier_settings_without_targets_is_refused():
    with pytest.raises(UserError, match="no alert targets"):
        notifier_config(Settings())


def test_notifier_settings_reject_non_http_urls_and_duplicate_names():
    with pytest.raises(UserError, match="not an http"):
        notifier_config(Settings(notifier=NotifierSettings(webhooks=[WebhookSettings(url="ftp://h/x")])))
    twice = [WebhookSettings(url="http://a", name="n"), WebhookSettings(url="http://b", name="n")]
    with pytest.raises(UserError, match="unique"):
        notifier_config(Settings(notifier=NotifierSettings(webhooks=twice)))


def test_notifier_webhooks_name_at_most_a_thousand_learners_unless_told(monkeypatch):
    monkeypatch.setenv(
        "LEARNPULSE_NOTIFIER__WEBHOOKS",
        json.dumps([{"url": "http://a/hook"}, {"url": "http://b/hook", "max_learners": 20},
                    {"url": "http://c/hook", "max_learners": None}]),
    )  # fmt: skip
    assert [t.max_learners for t in notifier_config(Settings()).targets] == [1000, 20, None]
    monkeypatch.setenv("LEARNPULSE_NOTIFIER__WEBHOOKS", json.dumps([{"url": "http://a/hook", "max_learners": -1}]))
    with pytest.raises(Exception, match="max_learners"):
        notifier_config(Settings())


def test_notifier_webhook_without_a_cap_stays_without_one_in_child_processes(monkeypatch):
    settings = Settings(notifier=NotifierSettings(webhooks=[WebhookSettings(url="http://a/hook", max_learners=None)]))
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    assert [t.max_learners for t in notifier_config(Settings()).targets] == [None]
