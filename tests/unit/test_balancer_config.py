"""The HAProxy configuration learnpulse renders from deploy/haproxy/haproxy.cfg."""

from __future__ import annotations

import pytest

from learnpulse.balancer import TEMPLATE, render_config
from learnpulse.errors import UserError


def test_balancer_config_lists_every_gateway_and_binds_where_told():
    text = render_config(TEMPLATE.read_text(), "127.0.0.1:8087", ["127.0.0.1:8088", "10.0.0.2:8088"])
    assert "bind 127.0.0.1:8087" in text
    assert "    server gateway-1 127.0.0.1:8088" in text and "    server gateway-2 10.0.0.2:8088" in text
    assert "@" not in text.split("frontend lrs", 1)[1]  # every placeholder filled
    # Only the LRS's paths are passed on (a gateway's /metrics is not).
    assert "http-request deny deny_status 404 unless { path_beg /xapi/ }" in text
    other_prefix = render_config(TEMPLATE.read_text(), "127.0.0.1:8087", ["127.0.0.1:8088"], "/lrs/xapi/")
    assert "path_beg /lrs/xapi/ }" in other_prefix
    # A request is repeated only when no gateway received it: a POST is never sent twice.
    assert "retry-on conn-failure" in text and "option forwardfor" in text


def test_balancer_without_gateways_is_refused_with_what_to_set():
    with pytest.raises(UserError, match="LEARNPULSE_BALANCER__BACKENDS"):
        render_config(TEMPLATE.read_text(), "127.0.0.1:8087", [])
