"""The audit service on its own: `faststream run services.audit.app:app`."""

from services.bootstrap import build_app

app = build_app("audit")
