"""The intake service on its own: `faststream run services.intake.app:app`."""

from services.bootstrap import build_app

app = build_app("intake")
