"""Operator accounts and signed-in HTTP sessions for tests of the dashboard."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import requests

from learnpulse.operators import add_operator, operators_path

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def make_operator(home: Path, name: str, role: str, schools=(), cohorts=()) -> str:
    """Create an account in ``home``; returns its (random) password."""
    password = secrets.token_urlsafe(16)
    add_operator(operators_path(home), name, role, password, tuple(schools), tuple(tuple(c) for c in cohorts))
    return password


def sign_in_attempt(base: str, name: str, password: str, http: requests.Session | None = None) -> requests.Response:
    """Load the sign-in form and post it (as a browser does); the answer, redirects not followed."""
    http = http or requests.Session()
    form = http.get(f"{base}/signin", timeout=30)
    token = _CSRF.search(form.text).group(1)
    return http.post(f"{base}/signin", data={"name": name, "password": password, "csrf": token},
                     allow_redirects=False, timeout=60)  # fmt: skip


def signed_in(base: str, name: str, password: str) -> requests.Session:
    """A requests session signed in as ``name``; ``.csrf`` holds the session's CSRF token."""
    http = requests.Session()
    answer = sign_in_attempt(base, name, password, http)
    assert answer.status_code == 303, (answer.status_code, answer.text[:300])
    page = http.get(f"{base}/", timeout=30)
    assert page.status_code == 200, page.status_code
    http.csrf = _CSRF.search(page.text).group(1)  # type: ignore[attr-defined]
    return http
