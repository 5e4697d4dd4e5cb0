"""`casebridge audit ...`: the auditors' commands.

    verify       the whole log (database, read-only, or an export) against the latest
                 signed tree head; prints ok or the first divergent seq (exit 0 / 1)
    proof        a record's inclusion proof, checked locally against a signed head
    consistency  a consistency proof between two signed heads, checked locally
    export       a case's history, or the whole log, as JSON Lines
    tree-heads   the signed tree head history (signatures checked with --public-key)
    token        a new auditor token and the line to configure it with
    keygen       a new Ed25519 signing key pair (development)
    serve        run the HTTP API (uvicorn)
    sign         run the tree head signer

The checking commands trust nothing but the public key file: data may come from the API
(`--api URL --token T`, every query then lands in the audit log) or straight from PostgreSQL
(`--database-url`, read-only), and is verified here either way.

`verify` and `export` show their progress on stderr (records done, rate, time left) with
`--progress`, or by default when stderr is a terminal; stdout carries only the results.

Payloads are stored sealed per person. `verify` and `export --payload` open them with the
deployment's key-encryption key (`CASEBRIDGE_KEK`, or `<run dir>/secrets/keys/kek`) when there
is one; without it `verify` still checks every leaf and signed head and says that the sealed
values went unchecked. Records whose person's data was erased are reported as erased, never as
failures, and exported with `"erased": true` and no payload.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import sys
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit.config import SCOPES, AuditSettings, token_hash
from services.audit.proof_checks import check_consistency, check_inclusion
from services.audit.queries import (
    LeafHashCache,
    LogIntegrityError,
    all_tree_heads,
    consistency_proof,
    export_case,
    export_log,
    get_event,
    inclusion_proof,
    screened_tree_heads,
)
from services.audit.tree_head import (
    SignedTreeHead,
    generate_keypair,
    private_key_pem,
    public_key_pem,
    screen_tree_heads,
    sth_from_dict,
    sth_to_dict,
    verify_tree_head,
)
from services.audit.verify_entries import VerificationReport
from services.audit.verify_stored import (
    KekLoader,
    load_public_key_file,
    read_leaf_hashes_file,
    read_tree_heads_file,
    verify_database,
    verify_export,
)
from services.privacy.keys import KeyUnavailableError, load_kek
from services.privacy.vault import PersonVault
from services.runtime.credentials import AUDITOR_ROLE, database_url
from services.runtime.database import asyncpg_dsn
from services.runtime.logging import configure_logging
from services.runtime.progress import Progress, add_progress_flag
from services.runtime.settings import Settings

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# --- pure checks (what "verified locally" means) ---------------------------------------------


# --- sources -----------------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    token: str | None = args.token or os.environ.get("CASEBRIDGE_AUDIT_TOKEN")
    if not token:
        raise SystemExit("--api needs --token (or CASEBRIDGE_AUDIT_TOKEN)")
    return token


async def _api_get(args: argparse.Namespace, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=args.api, timeout=60) as client:
        response = await client.get(
            path,
            params={k: v for k, v in params.items() if v is not None},
            headers={"Authorization": f"Bearer {_token(args)}"},
        )
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


async def _connect(url: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(
        asyncpg_dsn(url), server_settings={"default_transaction_read_only": "on"}
    )
    return conn


def _database_url(args: argparse.Namespace) -> str:
    url: str = args.database_url or database_url(Settings(), AUDITOR_ROLE)
    return url


def _kek_loader() -> KekLoader | None:
    """The deployment's KEK, as a loader verification workers can call themselves; None
    (payloads unchecked) where this machine holds no KEK, as an outside auditor's does not."""
    loader = partial(load_kek, secrets_dir=Settings().secrets_dir)
    try:
        loader()
    except FileNotFoundError:
        return None
    return loader


# --- commands ----------------------------------------------------------------------------------


def _print_report(report: VerificationReport, as_json: bool, out: TextIO) -> None:
    if as_json:
        fields = {
            name: getattr(report, name)
            for name in (
                "ok",
                "problem",
                "checked",
                "tree_size",
                "first_divergent_seq",
                "intact_prefix",
                "divergent_before",
                "payloads_checked",
                "erased",
                "detail",
            )
        }
        fields["rejected_heads"] = [
            {"tree_size": r.head.tree_size, "reason": r.reason, "detail": r.detail}
            for r in report.rejected_heads
        ]
        out.write(orjson.dumps(fields).decode() + "\n")
        return
    if report.ok:
        out.write(f"ok: {report.detail}\n")
    else:
        where = (
            f"first divergent seq {report.first_divergent_seq}"
            if report.first_divergent_seq is not None
            else f"divergence from seq {report.intact_prefix} on"
        )
        out.write(f"FAILED ({report.problem}): {where}\n  {report.detail}\n")
    for r in report.rejected_heads:
        out.write(f"ignored tree head of size {r.head.tree_size} ({r.reason}): {r.detail}\n")


def _default_file(given: Path | None, default: Path) -> Path | None:
    if given is not None:
        return given
    return default if default.exists() else None


async def _verify(args: argparse.Namespace) -> int:
    key = load_public_key_file(args.public_key)
    audit = AuditSettings()
    heads_files = args.tree_heads or [
        p for p in [_default_file(None, audit.tree_heads_path)] if p is not None
    ]
    heads = [h for path in heads_files for h in read_tree_heads_file(path)]
    leaves_file = _default_file(args.leaf_hashes, audit.leaf_hashes_path)
    leaves = read_leaf_hashes_file(leaves_file) if leaves_file is not None else None
    if args.export is not None:
        report = await asyncio.to_thread(
            verify_export, args.export, key, heads, leaf_hashes=leaves, progress=args.progress
        )
    else:
        report = await verify_database(
            _database_url(args),
            key,
            tree_heads=heads,
            use_table_heads=not args.no_table_heads,
            leaf_hashes=leaves,
            kek=None if args.no_payloads else _kek_loader(),
            progress=args.progress,
        )
    _print_report(report, args.json, sys.stdout)
    return EXIT_OK if report.ok else EXIT_FAILED


async def _fetch_proof(
    args: argparse.Namespace, key: Ed25519PublicKey
) -> tuple[dict[str, Any], dict[str, Any]]:
    if args.api:
        body = await _api_get(
            args, f"/v1/events/{args.seq}", proof="true", tree_size=args.tree_size
        )
        return body["record"], body["inclusion_proof"]
    conn = await _connect(_database_url(args))
    try:
        row = await get_event(conn, args.seq)
        if row is None:
            raise SystemExit(f"no record with seq {args.seq}")
        heads = await screened_tree_heads(conn, key)
        p = await inclusion_proof(conn, LeafHashCache(), args.seq, args.tree_size, heads=heads)
    finally:
        await conn.close()
    proof = {
        "leaf_index": p.seq,
        "tree_size": p.tree_size,
        "audit_path": [base64.b64encode(h).decode() for h in p.path],
        "tree_head": None if p.tree_head is None else sth_to_dict(p.tree_head),
    }
    return row.to_dict(), proof


async def _proof(args: argparse.Namespace) -> int:
    key = load_public_key_file(args.public_key)
    record, proof = await _fetch_proof(args, key)
    ok, message = check_inclusion(record, proof, key)
    print(("ok: " if ok else "FAILED: ") + message)
    return EXIT_OK if ok else EXIT_FAILED


async def _consistency(args: argparse.Namespace) -> int:
    key = load_public_key_file(args.public_key)
    if args.api:
        body = await _api_get(args, "/v1/proofs/consistency", first=args.first, second=args.second)
        if body.get("first_tree_head") is None or body.get("second_tree_head") is None:
            print("FAILED: no signed tree head for one of the sizes")
            return EXIT_FAILED
        first, second = (
            sth_from_dict(body["first_tree_head"]),
            sth_from_dict(body["second_tree_head"]),
        )
        path = [base64.b64decode(h, validate=True) for h in body["proof"]]
    else:
        conn = await _connect(_database_url(args))
        try:
            heads = await screened_tree_heads(conn, key)
            p = await consistency_proof(conn, LeafHashCache(), args.first, args.second, heads=heads)
        finally:
            await conn.close()
        if p.first_head is None or p.second_head is None:
            print("FAILED: no signed tree head for one of the sizes")
            return EXIT_FAILED
        first, second, path = p.first_head, p.second_head, p.path
    ok, message = check_consistency(first, second, path, key)
    print(("ok: " if ok else "FAILED: ") + message)
    return EXIT_OK if ok else EXIT_FAILED


async def _export_lines(
    args: argparse.Namespace, progress: Progress | None = None
) -> AsyncIterator[bytes]:
    if args.api:
        if args.case_id is None:
            raise SystemExit("--api exports one case (--case-id); --all needs --database-url")
        async with (
            httpx.AsyncClient(base_url=args.api, timeout=httpx.Timeout(60, read=600)) as client,
            client.stream(
                "GET",
                f"/v1/cases/{args.case_id}/export",
                headers={"Authorization": f"Bearer {_token(args)}"},
            ) as response,
        ):
            if response.status_code != 200:
                raise SystemExit(f"export: HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if line:
                    yield line.encode() + b"\n"
        return
    vault = PersonVault(load_kek(secrets_dir=Settings().secrets_dir)) if args.payload else None
    conn = await _connect(_database_url(args))
    try:
        if progress is not None and progress.enabled and args.case_id is None:
            progress.total = await conn.fetchval("SELECT count(*) FROM audit_log")
        lines = (
            export_case(conn, args.case_id, vault=vault)
            if args.case_id is not None
            else export_log(conn, vault=vault)
        )
        async for chunk in lines:
            yield chunk
    finally:
        await conn.close()


def _export_progress(args: argparse.Namespace) -> Progress:
    """Progress on stderr: asked for, or by default when stderr is a terminal and the
    records are not being printed on one too (the two would garble each other)."""
    enabled = args.progress
    if enabled is None:
        enabled = sys.stderr.isatty() and (args.output is not None or not sys.stdout.isatty())
    return Progress("export", enabled=enabled)


async def _export(args: argparse.Namespace) -> int:
    out = args.output.open("wb") if args.output is not None else sys.stdout.buffer
    count = 0
    progress = _export_progress(args)
    try:
        async for line in _export_lines(args, progress):
            out.write(line)
            count += 1
            progress.update(count)
    except (LogIntegrityError, KeyUnavailableError) as exc:
        # A payload that does not open is never written out; `verify` names every such seq.
        progress.finish(note="stopped")
        print(f"export stopped after {count} records: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        progress.finish()
        if args.output is not None:
            out.close()
    print(f"exported {count} records", file=sys.stderr)
    return EXIT_OK


async def _tree_heads(args: argparse.Namespace) -> int:
    key = load_public_key_file(args.public_key) if args.public_key else None
    heads: list[SignedTreeHead]
    if args.file is not None:
        heads = read_tree_heads_file(args.file)
    elif args.api:
        heads, cursor = [], None
        while True:
            body = await _api_get(args, "/v1/tree-heads", cursor=cursor, limit=1000)
            heads += [sth_from_dict(h) for h in body["items"]]
            cursor = body.get("next_cursor")
            if not cursor:
                break
    else:
        conn = await _connect(_database_url(args))
        try:
            heads = await all_tree_heads(conn)
        finally:
            await conn.close()
    bad = 0
    reasons = (
        {r.head: r.reason for r in screen_tree_heads(heads, key).rejected}
        if key is not None
        else {}
    )
    for head in sorted(heads, key=lambda h: (h.tree_size, h.timestamp)):
        data = sth_to_dict(head)
        if key is not None:
            data["signature_ok"] = verify_tree_head(key, head)
            bad += not data["signature_ok"]
            if head in reasons:
                data["rejected"] = reasons[head]
        print(orjson.dumps(data).decode())
    return EXIT_FAILED if bad else EXIT_OK


def _new_token(args: argparse.Namespace) -> int:
    token = "cba_" + secrets.token_urlsafe(32)
    entry = {"id": args.id, "token_sha256": token_hash(token), "scopes": args.scope}
    print(f"token (give it to the auditor once; it is not stored): {token}", file=sys.stderr)
    print(orjson.dumps(entry).decode())
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    directory: Path = args.out_dir
    directory.mkdir(parents=True, exist_ok=True)
    private, public = generate_keypair()
    secret = directory / "audit-signing-key.pem"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(private_key_pem(private))
    (directory / "audit-public-key.pem").write_text(public_key_pem(public))
    print(f"wrote {secret} (secret, mode 600) and {directory / 'audit-public-key.pem'}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.audit.api import create_api

    audit = AuditSettings()
    app = create_api(Settings(), audit)
    # log_config=None: uvicorn logs through CaseBridge's logging (and its scrubbing processors)
    # instead of installing handlers of its own.
    uvicorn.run(
        app, host=args.host or audit.api_host, port=args.port or audit.api_port, log_config=None
    )
    return EXIT_OK


async def _sign(args: argparse.Namespace) -> int:
    from services.audit.signer import (
        SigningRefusedError,
        TreeHeadSigner,
        run_signer,
        signer_connections,
    )

    settings, audit = Settings(), AuditSettings()
    try:
        if not args.once:
            await run_signer(settings, audit)
            return EXIT_OK
        db, topic = signer_connections(settings)
        await db.start()
        try:
            signer = TreeHeadSigner(
                db.pool, audit.private_key(), export_dir=audit.export_dir, topic=topic
            )
            await signer.start()
            await signer.poll()
            head = signer.last_signed
            if head is None or head.tree_size < signer.tree_size:
                head = await signer.sign()
            await signer.flush()
            print(orjson.dumps(sth_to_dict(head)).decode())
        finally:
            await topic.close()
            await db.close()
    except (LogIntegrityError, SigningRefusedError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="casebridge audit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def source(p: argparse.ArgumentParser, *, api: bool = True) -> None:
        p.add_argument("--database-url", help="read PostgreSQL directly (read-only session)")
        if api:
            p.add_argument("--api", help="the audit API's base URL, e.g. http://127.0.0.1:8095")
            p.add_argument("--token", help="bearer token (or CASEBRIDGE_AUDIT_TOKEN)")

    def key(p: argparse.ArgumentParser, *, required: bool = True) -> None:
        p.add_argument(
            "--public-key", type=Path, required=required, help="Ed25519 public key (PEM)"
        )

    p = sub.add_parser("verify", help="verify the whole log against the latest signed head")
    key(p)
    source(p, api=False)
    p.add_argument("--export", type=Path, help="a whole-log JSONL export instead of the database")
    p.add_argument(
        "--tree-heads",
        type=Path,
        action="append",
        help="tree-heads.jsonl exported by the signer (repeatable; default: the signer's file)",
    )
    p.add_argument("--leaf-hashes", type=Path, help="leaf-hashes.bin exported by the signer")
    p.add_argument("--no-table-heads", action="store_true", help="ignore audit_tree_head")
    p.add_argument(
        "--no-payloads",
        action="store_true",
        help="do not open the sealed payloads even where a key-encryption key is available",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_flag(p)
    p.set_defaults(run=_verify)

    p = sub.add_parser("proof", help="check one record's inclusion proof locally")
    key(p)
    source(p)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--tree-size", type=int, help="default: the latest signed head")
    p.set_defaults(run=_proof)

    p = sub.add_parser("consistency", help="check a consistency proof between two heads")
    key(p)
    source(p)
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--second", type=int, help="default: the latest signed head")
    p.set_defaults(run=_consistency)

    p = sub.add_parser("export", help="a case's history or the whole log as JSON Lines")
    source(p)
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--case-id")
    scope.add_argument("--all", action="store_true")
    p.add_argument(
        "--payload",
        action="store_true",
        help="include payloads, opened with the key-encryption key; erased ones are marked"
        " (database source)",
    )
    p.add_argument("--output", type=Path, help="file to write (default: stdout)")
    add_progress_flag(p)
    p.set_defaults(run=_export)

    p = sub.add_parser("tree-heads", help="the signed tree head history")
    key(p, required=False)
    source(p)
    p.add_argument("--file", type=Path, help="read a tree-heads.jsonl file instead")
    p.set_defaults(run=_tree_heads)

    p = sub.add_parser("token", help="make an auditor token and its configuration entry")
    p.add_argument("--id", required=True, help="the auditor's id")
    p.add_argument("--scope", action="append", choices=sorted(SCOPES), required=True)
    p.set_defaults(run=_new_token)

    p = sub.add_parser("keygen", help="make an Ed25519 signing key pair (development)")
    p.add_argument("--out-dir", type=Path, default=Path(".run"))
    p.set_defaults(run=_keygen)

    p = sub.add_parser("serve", help="run the auditors' HTTP API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(run=_serve)

    p = sub.add_parser("sign", help="run the tree head signer")
    p.add_argument("--once", action="store_true", help="catch up, sign once, exit")
    p.set_defaults(run=_sign)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; the lead hooks it up as `casebridge audit ...`."""
    args = _parser().parse_args(argv)
    # Log lines go to stderr, so stdout carries only results (JSON lines, reports).
    configure_logging(
        fmt="console", level="INFO" if args.command in ("serve", "sign") else "WARNING"
    )
    if getattr(args, "api", None) and getattr(args, "database_url", None):
        print("give either --api or --database-url", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = args.run(args)
        code: int = asyncio.run(result) if asyncio.iscoroutine(result) else result
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
