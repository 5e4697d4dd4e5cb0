"""Settings of the caseworkers' console and API (environment prefix CASEBRIDGE_CONSOLE_)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    """Where the console listens, how long a sign-in lasts, how long an action is awaited."""

    model_config = SettingsConfigDict(
        env_prefix="CASEBRIDGE_CONSOLE_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    host: str = "127.0.0.1"
    """Address the console binds to; put a TLS-terminating proxy in front of it in production."""
    port: int = 8090
    """Port of the console (web pages under /, JSON API under /api/v1)."""
    session_idle_s: float = 900.0
    """A session unused this long is signed out (15 minutes)."""
    session_max_s: float = 8 * 3600.0
    """A session ends this long after sign-in, however much it is used (one working day)."""
    action_wait_s: float = 5.0
    """How long a request waits for its action to be recorded before answering 202 (pending)."""
    secure_cookies: bool = False
    """Mark the session cookie `Secure` (set it when the console is served over HTTPS)."""
    audit_api_url: str = "http://127.0.0.1:8095"
    """The auditors' API (`casebridge audit serve`) the auditors' pages ask."""
    audit_api_token: SecretStr | None = None
    """The console's token for the auditors' API (scope audit:metadata); without one the
    auditors' pages say they are not configured."""
