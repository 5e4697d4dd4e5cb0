"""CaseBridge's wire contract: CloudEvents envelope, payload models, vocabularies and topics.

Depends only on pydantic and the standard library, so agency integrators can install and
import it on its own. See docs/schemas.md.
"""
