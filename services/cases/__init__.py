"""The cases service: one case per referral, return or SAR incident, its lifecycle, deadlines
and need-to-know updates. The pure domain is ``services.cases.domain``; I/O lives beside it."""
