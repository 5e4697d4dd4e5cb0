"""`casebridge console ...`: serve the console, and manage its accounts (as the owner role).

serve         run the console (pages and JSON API) with uvicorn
add-user      create or reset an account; prints its new password once
disable-user  disable an account and end its sessions at once
openapi       print the API's OpenAPI document (checked in as docs/console-openapi.json)
"""

from __future__ import annotations

import argparse
import asyncio
import json

import asyncpg

from services.console.accounts import Role, add_account, disable_account, new_password
from services.runtime.credentials import OWNER_ROLE, database_url
from services.runtime.database import asyncpg_dsn
from services.runtime.settings import Settings, get_settings


async def create_accounts(
    settings: Settings, accounts: list[tuple[str, str, Role, str]]
) -> dict[str, str]:
    """Create or reset accounts (username, agency, role, display name) as the database owner;
    returns each one's new password."""
    passwords: dict[str, str] = {}
    conn = await asyncpg.connect(asyncpg_dsn(database_url(settings, OWNER_ROLE)))
    try:
        for username, agency, role, display_name in accounts:
            password = new_password()
            await add_account(
                conn,
                username=username,
                agency=agency,
                role=role,
                display_name=display_name,
                password=password,
            )
            passwords[username] = password
    finally:
        await conn.close()
    return passwords


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.console.app import create_console
    from services.console.config import ConsoleSettings

    console = ConsoleSettings()
    app = create_console(get_settings(), console)
    uvicorn.run(
        app, host=args.host or console.host, port=args.port or console.port, log_config=None
    )
    return 0


def _add_user(args: argparse.Namespace) -> int:
    settings = get_settings()
    account = (args.username, args.agency, Role(args.role), args.name or args.username)
    passwords = asyncio.run(create_accounts(settings, [account]))
    print(f"{args.username} ({args.role} of {args.agency}); password, shown once:")
    print(passwords[args.username])
    return 0


def _disable_user(args: argparse.Namespace) -> int:
    async def go() -> bool:
        conn = await asyncpg.connect(asyncpg_dsn(database_url(get_settings(), OWNER_ROLE)))
        try:
            return await disable_account(conn, args.username)
        finally:
            await conn.close()

    found = asyncio.run(go())
    print(f"{args.username}: {'disabled, sessions ended' if found else 'no such account'}")
    return 0 if found else 1


def _openapi(_: argparse.Namespace) -> int:
    from services.console.app import openapi_document

    print(json.dumps(openapi_document(), indent=2, sort_keys=True))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("console", help="the caseworkers' console: serve it, manage accounts")
    console_sub = p.add_subparsers(dest="console_command", required=True)
    p = console_sub.add_parser("serve", help="run the console (pages and JSON API)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=_serve)
    p = console_sub.add_parser("add-user", help="create or reset an account; prints its password")
    p.add_argument("username")
    p.add_argument("--agency", required=True)
    p.add_argument("--role", choices=[r.value for r in Role], default=Role.caseworker.value)
    p.add_argument("--name", default=None, help="display name (default: the username)")
    p.set_defaults(func=_add_user)
    p = console_sub.add_parser("disable-user", help="disable an account, end its sessions")
    p.add_argument("username")
    p.set_defaults(func=_disable_user)
    console_sub.add_parser("openapi", help="print the API's OpenAPI document").set_defaults(
        func=_openapi
    )
