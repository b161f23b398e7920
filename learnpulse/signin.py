"""Operators' sign-in to the dashboard: sessions, CSRF, lock-out, and who is asking on each request.

- Sessions live in this process (random 256-bit ids; nothing to sign, so no secret to keep):
  they end after ``session_idle_s`` without a request, ``session_max_s`` after sign-in, at
  sign-out, when the account is removed or its password changes, and when the process stops.
- The session cookie is ``HttpOnly; SameSite=Strict; Path=/`` and ``Secure`` when the settings
  say the app is reached over HTTPS (``operators.secure_cookies``).
- Every request that changes something (any method but GET/HEAD/OPTIONS) must carry the
  session's CSRF token (``X-CSRF-Token`` header or ``csrf`` form field), compared in constant
  time; the sign-in form carries a token of its own, tied to a pre-session cookie.
- Failed sign-ins are counted per account name (whether or not it exists) and per client
  address; past the limit within the window, sign-ins are refused unchecked for the
  cool-down. No answer tells whether an account exists.
- ``/api/sql`` is not a session route: it keeps its bearer tokens (researchers see
  pseudonyms only) and reads no cookie.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from producers.gateway.forwarded import client_address

from reporting.scope import SCOPE_KEY, VIEWER_KEY
from schemas import metrics as M

from .operators import Operator, OperatorAccounts
from .settings import OperatorSettings

log = logging.getLogger("learnpulse.signin")

SESSION_COOKIE = "lp_session"
FORM_COOKIE = "lp_signin"
SIGNIN_PATH = "/signin"
SIGNOUT_PATH = "/signout"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Routes with their own authentication, never a session's (bearer tokens, see module docstring).
NOT_SESSION_PATHS = frozenset({"/api/sql", SIGNIN_PATH})
_MAX_SESSIONS = 10_000
_MAX_TRACKED = 50_000


def _fingerprint(password_hash: str) -> str:
    """What a session remembers of the password it was opened with: a new password ends it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()


@dataclass
class Session:
    operator: str
    csrf: str
    password: str  # _fingerprint of the hash at sign-in
    started: float
    seen: float


class Sessions:
    """Server-side sessions by random id, with idle and absolute expiry."""

    def __init__(self, idle_s: float, max_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, op: Operator) -> tuple[str, Session]:
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        session = Session(op.name, secrets.token_urlsafe(32), _fingerprint(op.password_hash), now, now)
        with self._lock:
            if len(self._by_id) >= _MAX_SESSIONS:
                self._prune(now)
            if len(self._by_id) >= _MAX_SESSIONS:  # still full of live sessions: the oldest goes
                del self._by_id[min(self._by_id, key=lambda k: self._by_id[k].started)]
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str) -> Session | None:
        """The live session ``sid`` (its idle clock restarts), else None (an expired one is dropped)."""
        now = self.clock()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if now - session.seen > self.idle_s or now - session.started > self.max_s:
                del self._by_id[sid]
                return None
            session.seen = now
            return session

    def close(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def _prune(self, now: float) -> None:
        for sid in [k for k, s in self._by_id.items() if now - s.seen > self.idle_s or now - s.started > self.max_s]:
            del self._by_id[sid]

    def __len__(self) -> int:
        return len(self._by_id)


class LockOut:
    """Failures per key (an account name, a client address) within a window; past the limit, a cool-down."""

    def __init__(self, window_s: float, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, key: str) -> float:
        """Seconds ``key`` stays locked (0: not locked)."""
        now = self.clock()
        with self._lock:
            until = self._until.get(key, 0.0)
            if until <= now:
                self._until.pop(key, None)
                return 0.0
            return until - now

    def fail(self, key: str, limit: int) -> bool:
        """Count a failure of ``key``; True when it is now locked."""
        now = self.clock()
        with self._lock:
            if len(self._failures) >= _MAX_TRACKED:
                self._forget_old(now)
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and now - times[0] > self.window_s:
                times.popleft()
            if len(times) >= limit:
                self._until[key] = now + self.cooldown_s
                times.clear()
                return True
            return False

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or now - t[-1] > self.window_s]:
            del self._failures[key]
        if len(self._failures) >= _MAX_TRACKED:  # a flood of fresh keys: forget the oldest half
            for key in sorted(self._failures, key=lambda k: self._failures[k][-1])[: _MAX_TRACKED // 2]:
                del self._failures[key]


_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>learnpulse — sign in</title>
<style>body{{font:15px/1.4 system-ui,sans-serif;background:#0f1720;color:#e6edf3;display:grid;place-items:center;min-height:90vh}}
form{{background:#17212b;padding:2em;border-radius:8px;display:grid;gap:.8em;min-width:300px}}
input{{font:inherit;padding:.4em}}button{{font:inherit;padding:.5em}}p.error{{color:#f85149;margin:0}}</style></head>
<body><form method="post" action="{action}"><h1>learnpulse</h1>{message}
<label>Operator name <input name="name" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="csrf" value="{csrf}"><button type="submit">Sign in</button></form></body></html>"""
_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                 "Content-Security-Policy": "frame-ancestors 'none'", "Referrer-Policy": "same-origin"}  # fmt: skip
FAILED = "The name or the password is wrong."
LOCKED = "Too many failed sign-ins: sign-in is paused for {minutes} minutes."


class SignIn:
    """The sign-in routes and the middleware that puts the signed-in operator's scope on each request."""

    def __init__(self, accounts: OperatorAccounts, settings: OperatorSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.accounts = accounts
        self.settings = settings
        self.sessions = Sessions(settings.session_idle_s, settings.session_max_s, clock)
        self.lockout = LockOut(settings.lockout_window_s, settings.lockout_cooldown_s, clock)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        app.router.add_get(SIGNIN_PATH, self.form)
        app.router.add_post(SIGNIN_PATH, self.signin)
        app.router.add_post(SIGNOUT_PATH, self.signout)

    # -- who is asking ---------------------------------------------------------------------

    def current(self, request: web.Request) -> tuple[str, Session, Operator] | None:
        sid = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(sid) if sid else None
        if session is None:
            return None
        op = self.accounts.get(session.operator)
        if op is None or not hmac.compare_digest(_fingerprint(op.password_hash), session.password):
            self.sessions.close(sid)  # removed, or a new password: the session ends
            return None
        return sid, session, op

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if request.path in NOT_SESSION_PATHS:
            return await handler(request)
        current = self.current(request)
        if request.method not in SAFE_METHODS:
            if current is None:
                return _refuse(401, "auth.required", "sign in first (POST /signin)")
            if not await _csrf_ok(request, current[1].csrf):
                return _refuse(403, "auth.csrf", "send the session's CSRF token (X-CSRF-Token header or csrf field)")
        if current is not None:
            _sid, session, op = current
            request[SCOPE_KEY] = op.scope()
            request[VIEWER_KEY] = {"name": op.name, "role": op.role, "csrf": session.csrf,
                                   "signout": SIGNOUT_PATH}  # fmt: skip
        return await handler(request)

    # -- routes ----------------------------------------------------------------------------

    def _form(self, status: int = 200, message: str = "") -> web.Response:
        token = secrets.token_urlsafe(32)
        body = _FORM.format(action=SIGNIN_PATH.lstrip("/"), csrf=token,
                            message=f'<p class="error" role="alert">{html.escape(message)}</p>' if message else "")  # fmt: skip
        response = web.Response(text=body, content_type="text/html", status=status, headers=_PAGE_HEADERS)
        self._set_cookie(response, FORM_COOKIE, token)
        return response

    async def form(self, request: web.Request) -> web.Response:
        if self.current(request) is not None:
            raise web.HTTPSeeOther("/")
        return self._form()

    async def signin(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not _same(request.cookies.get(FORM_COOKIE, ""), str(form.get("csrf", ""))):
            return _refuse(403, "auth.csrf", "the sign-in form is stale or came from elsewhere: load /signin again")
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        address = client_address(request, self.settings.trusted_proxies)
        keys = ((f"name:{name.lower()}", self.settings.lockout_failures),
                (f"address:{address}", self.settings.address_failures))  # fmt: skip
        wait = max(self.lockout.locked(key) for key, _ in keys)
        if wait > 0:
            M.OPERATOR_SIGNINS.labels("locked").inc()
            return self._form(429, LOCKED.format(minutes=max(1, round(wait / 60))))
        op = await asyncio.to_thread(self.accounts.verify, name, password) if name and password else None
        if op is None:
            M.OPERATOR_SIGNINS.labels("failed").inc()
            for key, limit in keys:
                if self.lockout.fail(key, limit):
                    log.warning("sign-in locked for %s after repeated failures", key)
            return self._form(401, FAILED)
        M.OPERATOR_SIGNINS.labels("ok").inc()
        self.lockout.clear(keys[0][0])
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            self.sessions.close(old)
        sid, _session = self.sessions.open(op)
        log.info("operator %s (%s) signed in from %s", op.name, op.role, address)
        response = _see_other("/")
        self._set_cookie(response, SESSION_COOKIE, sid)
        response.del_cookie(FORM_COOKIE, path="/")
        return response

    async def signout(self, request: web.Request) -> web.Response:
        # The middleware let this through: a live session and its CSRF token.
        sid = request.cookies.get(SESSION_COOKIE, "")
        self.sessions.close(sid)
        M.OPERATOR_SIGNOUTS.inc()
        response = _see_other(SIGNIN_PATH)
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    def _set_cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(name, value, path="/", httponly=True, samesite="Strict",
                            secure=self.settings.secure_cookies)  # fmt: skip


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _same(expected: str, given: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


async def _csrf_ok(request: web.Request, expected: str) -> bool:
    token = request.headers.get("X-CSRF-Token")
    if token is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        token = str((await request.post()).get("csrf", ""))
    return _same(expected, token or "")


def _refuse(status: int, rule: str, message: str) -> web.Response:
    return web.json_response({"error": f"{rule}: {message}", "rule": rule}, status=status,
                             headers={"Cache-Control": "no-store"})  # fmt: skip
