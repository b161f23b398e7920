"""What staff see for a learner: the display-name rules of the per-school directory (issue 17 part 3)."""

from __future__ import annotations

import pytest

from schemas.identity import MAX_DISPLAY_NAME, display_name


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        # The actor's name wins over every identifier.
        ({"name": "Ada Lovelace", "mbox": "mailto:ada@example.org"}, "Ada Lovelace"),
        ({"name": "Ada", "account": {"homePage": "https://lms.example", "name": "a7"}}, "Ada"),
        # No name: the account as name@homePage.
        ({"account": {"homePage": "https://lms.example", "name": "a7"}}, "a7@https://lms.example"),
        # No name, no account: the mbox or the openid without its scheme.
        ({"mbox": "mailto:ada@example.org"}, "ada@example.org"),
        ({"openid": "https://id.example/ada"}, "id.example/ada"),
        # A blank name is no name.
        ({"name": "   ", "mbox": "mailto:ada@example.org"}, "ada@example.org"),
        # Nothing readable: the page shows the pseudonym.
        ({"mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"}, ""),
        ({"objectType": "Group", "member": [{"mbox": "mailto:a@x.org"}]}, ""),
        ({"account": {"homePage": "https://lms.example", "name": ""}}, ""),
        ({"name": 42, "openid": "urn:x"}, "urn:x"),
        (None, ""),
        ("mailto:ada@example.org", ""),
        # Control characters and runs of white space become one space.
        ({"name": "Ada\r\n\tLovelace\x1b[31m"}, "Ada Lovelace [31m"),
        ({"name": "  Ada  Lovelace "}, "Ada Lovelace"),
        ({"name": "Ada\u00a0Lovelace\u2028"}, "Ada Lovelace"),
        ({"name": "Zoë Ødegård"}, "Zoë Ødegård"),
    ],
)
def test_display_name_rules(agent, expected):
    assert display_name(agent) == expected


def test_display_name_is_bounded():
    assert display_name({"name": "x" * 10_000}) == "x" * MAX_DISPLAY_NAME
