"""The router service on its own: `faststream run services.router.app:app`."""

from services.bootstrap import build_app

app = build_app("router")
