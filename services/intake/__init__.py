"""Intake: the front door. Validates every inbound event, drops repeats, dead-letters the rest."""
