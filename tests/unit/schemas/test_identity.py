"""Learner pseudonyms: HMAC of the canonical inverse functional identifier."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidStatement
from schemas.identity import canonical_ifi, pseudonym


def test_identity_mbox_domain_and_scheme_case_do_not_matter():
    a = pseudonym(b"k", {"mbox": "MAILTO:Alice@Example.COM"})
    b = pseudonym(b"k", {"mbox": "mailto:Alice@example.com"})
    assert a == b


def test_identity_mbox_local_part_case_matters():
    assert pseudonym(b"k", {"mbox": "mailto:Alice@example.com"}) != pseudonym(b"k", {"mbox": "mailto:alice@example.com"})


def test_identity_each_ifi_kind_is_distinct_and_keyed():
    kinds = [
        {"mbox": "mailto:a@example.com"},
        {"mbox_sha1sum": "A" * 40},
        {"openid": "http://openid.example.com/a"},
        {"account": {"homePage": "https://lms.example.com", "name": "a"}},
    ]
    ifis = [canonical_ifi(k) for k in kinds]
    assert len(set(ifis)) == 4
    assert canonical_ifi({"mbox_sha1sum": "A" * 40}) == "mbox_sha1sum:" + "a" * 40
    # A different secret gives a different pseudonym: the key really is part of it.
    assert pseudonym(b"k1", kinds[3]) != pseudonym(b"k2", kinds[3])
    assert len(pseudonym(b"k1", kinds[3])) == 64


def test_identity_agent_without_ifi_is_rejected():
    with pytest.raises(InvalidStatement) as err:
        canonical_ifi({"name": "nobody"})
    assert err.value.rule == "actor.ifi"


def test_identity_anonymous_group_is_keyed_by_its_members_in_any_order():
    a = {"objectType": "Group", "member": [{"mbox": "mailto:b@example.com"}, {"openid": "http://o.example/c"}]}
    b = {"objectType": "Group", "member": list(reversed(a["member"]))}
    c = {"objectType": "Group", "member": [{"mbox": "mailto:b@example.com"}]}
    assert pseudonym(b"k", a) == pseudonym(b"k", b)
    assert pseudonym(b"k", a) != pseudonym(b"k", c)
    # An identified Group is keyed by its own IFI, not its members.
    assert canonical_ifi({"objectType": "Group", "mbox": "mailto:team@example.com", "member": a["member"]}) == (
        "mbox:mailto:team@example.com"
    )
