"""The cases service on its own: `faststream run services.cases.app:app`."""

from services.bootstrap import build_app

app = build_app("cases")
