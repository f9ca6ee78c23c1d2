"""The platform's state on PostgreSQL: users, API keys, agents, tokens, locks and a
double-entry ledger.

Money moves only as ledger transactions (``platform_transactions``), each a set of entries
(``platform_entries``) that sum to zero over accounts (``platform_accounts``): ``credits`` (where
funds come from; the only account that may go negative), ``user:<id>`` (what a user can still
spend or has earned), ``token:<jti>`` (a payment token's unspent, unlocked funds) and
``lock:<id>`` (funds locked for one request). An account's ``balance`` column is the sum of its
entries, kept in the same transaction, under a ``CHECK (balance >= 0)``: concurrent debits
queue on the account's row lock, and one that would overdraw fails as a whole. Accounts are
updated in a fixed order (by id) so that transfers cannot deadlock.

Mutating calls run through :meth:`PlatformStore.idempotent`: a repeated ``Idempotency-Key`` of
the same caller returns the first answer and moves no money again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import asyncpg

from robutler_core.errors import (
    BadRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RobutlerError,
)

from ..money import to_dollars
from .discovery import MIGRATION as DISCOVERY_MIGRATION
from .tokens import Signer, TokenError

MIGRATIONS = [
    """
    CREATE TABLE platform_users (
        id text PRIMARY KEY,
        name text NOT NULL UNIQUE,
        email text,
        role text NOT NULL CHECK (role IN ('user', 'admin')),
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE platform_api_keys (
        id text PRIMARY KEY,
        user_id text NOT NULL REFERENCES platform_users (id),
        key_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
    );
    CREATE TABLE platform_agents (
        id text PRIMARY KEY,
        name text NOT NULL UNIQUE,
        owner_id text NOT NULL REFERENCES platform_users (id),
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE platform_signing_keys (
        id bigserial PRIMARY KEY,
        private_pem text NOT NULL,
        active boolean UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE platform_accounts (
        id text PRIMARY KEY,
        balance bigint NOT NULL DEFAULT 0,
        CONSTRAINT platform_accounts_not_overdrawn CHECK (id = 'credits' OR balance >= 0)
    );
    INSERT INTO platform_accounts (id) VALUES ('credits');
    CREATE TABLE platform_transactions (
        id bigserial PRIMARY KEY,
        kind text NOT NULL,
        lock_id text,
        token_id text,
        charge_type text,
        description text,
        created_by text,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX platform_transactions_lock ON platform_transactions (lock_id);
    CREATE TABLE platform_entries (
        id bigserial PRIMARY KEY,
        transaction_id bigint NOT NULL REFERENCES platform_transactions (id),
        account_id text NOT NULL REFERENCES platform_accounts (id),
        amount bigint NOT NULL
    );
    CREATE INDEX platform_entries_account ON platform_entries (account_id);
    CREATE TABLE platform_tokens (
        id text PRIMARY KEY,
        user_id text NOT NULL REFERENCES platform_users (id),
        audience text NOT NULL,
        parent_id text REFERENCES platform_tokens (id),
        depth integer NOT NULL,
        max_depth integer NOT NULL,
        expires_at timestamptz NOT NULL,
        closed_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE platform_locks (
        id text PRIMARY KEY,
        token_id text NOT NULL REFERENCES platform_tokens (id),
        payee_id text NOT NULL REFERENCES platform_users (id),
        status text NOT NULL CHECK (status IN ('open', 'settled', 'released')),
        created_at timestamptz NOT NULL DEFAULT now(),
        closed_at timestamptz
    );
    CREATE INDEX platform_locks_token ON platform_locks (token_id) WHERE status = 'open';
    CREATE TABLE platform_idempotency (
        user_id text NOT NULL,
        key text NOT NULL,
        request_hash text NOT NULL,
        response text,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, key)
    );
    """,
    DISCOVERY_MIGRATION,
]

ROLES = ("user", "admin")
KEY_PREFIX = "rbt_"


class InsufficientBalanceError(PaymentRequiredError):
    """402: the payer's token (or user account) does not hold the amount."""

    code = "insufficient_balance"


class IdempotencyConflictError(RobutlerError):
    """409: an ``Idempotency-Key`` reused with a different request."""

    status_code = 409
    type = "invalid_request_error"
    code = "idempotency_key_reused"


def _hash_key(key: str) -> str:
    """The stored form of an API key: SHA-256 hex (keys are 256-bit random, so no salt or
    slow hash is needed: the hash cannot be searched back to the key)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _user(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "email": row["email"], "role": row["role"]}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


Operation = Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]]


class PlatformStore:
    """Every read and write of the platform, on one asyncpg pool (``database.acquire()``)."""

    def __init__(self, database: Any, signer: Signer) -> None:
        self.database = database
        self.signer = signer

    @classmethod
    async def open(cls, database: Any, issuer: str) -> PlatformStore:
        """Migrate ``database`` (a ``Database`` from ``postgres.connect``) and load (or make)
        the signing key."""
        await database.migrate("platform", MIGRATIONS)
        async with database.acquire() as connection:
            signer = await Signer.load_or_create(connection, issuer)
        return cls(database, signer)

    # --- users, keys, agents -----------------------------------------------------------

    async def create_user(self, name: str, email: str | None = None, role: str = "user") -> dict[str, Any]:
        """A new user ``{id, name, email, role}``; BadRequestError for an empty or taken name
        or an unknown role."""
        if not name or not name.strip():
            raise BadRequestError("a user needs a name", param="name")
        if role not in ROLES:
            raise BadRequestError(f"role must be one of {', '.join(ROLES)}, got '{role}'", param="role")
        user_id = _new_id("usr")
        async with self.database.acquire() as connection, connection.transaction():
            try:
                row = await connection.fetchrow(
                    "INSERT INTO platform_users (id, name, email, role) VALUES ($1, $2, $3, $4) RETURNING *",
                    user_id, name.strip(), email, role,
                )
            except asyncpg.UniqueViolationError:
                raise BadRequestError(f"a user named '{name}' exists already", param="name") from None
            await connection.execute("INSERT INTO platform_accounts (id) VALUES ($1)", f"user:{user_id}")
        return _user(row)

    async def find_user(self, reference: str) -> dict[str, Any]:
        """The user whose id or name is ``reference``; NotFoundError otherwise."""
        async with self.database.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT * FROM platform_users WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1", reference
            )
        if row is None:
            raise NotFoundError(f"no user with id or name '{reference}'", code="user_not_found")
        return _user(row)

    async def create_key(self, user_reference: str) -> dict[str, Any]:
        """A new API key for the user: ``{key, key_id, user_id}``; the key is not stored, only
        its hash, so this is the only time it is shown."""
        user = await self.find_user(user_reference)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = _new_id("key")
        async with self.database.acquire() as connection:
            await connection.execute(
                "INSERT INTO platform_api_keys (id, user_id, key_hash) VALUES ($1, $2, $3)",
                key_id, user["id"], _hash_key(key),
            )
        return {"key": key, "key_id": key_id, "user_id": user["id"]}

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke the key: ``{key_id, revoked: true}``; NotFoundError for an unknown id."""
        async with self.database.acquire() as connection:
            found = await connection.fetchval(
                "UPDATE platform_api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING true",
                key_id,
            )
        if not found:
            raise NotFoundError(f"no API key with id '{key_id}'", code="key_not_found")
        return {"key_id": key_id, "revoked": True}

    async def user_for_key(self, key: str) -> dict[str, Any] | None:
        """The user owning the unrevoked API key ``key``, or ``None``."""
        async with self.database.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT u.* FROM platform_api_keys k JOIN platform_users u ON u.id = k.user_id "
                "WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                _hash_key(key),
            )
        return _user(row) if row else None

    async def register_agent(self, name: str, owner_reference: str) -> dict[str, Any]:
        """Register agent ``name`` owned by the user: ``{agent_id, name, owner_id}``;
        BadRequestError when the name is taken."""
        owner = await self.find_user(owner_reference)
        agent_id = _new_id("agt")
        async with self.database.acquire() as connection:
            try:
                await connection.execute(
                    "INSERT INTO platform_agents (id, name, owner_id) VALUES ($1, $2, $3)",
                    agent_id, name, owner["id"],
                )
            except asyncpg.UniqueViolationError:
                raise BadRequestError(f"an agent named '{name}' is registered already", param="name") from None
        return {"agent_id": agent_id, "name": name, "owner_id": owner["id"]}

    async def agent(self, name: str) -> dict[str, Any]:
        """``{agent_id, name, owner_id}`` of the registered agent; NotFoundError otherwise."""
        async with self.database.acquire() as connection:
            row = await connection.fetchrow("SELECT * FROM platform_agents WHERE name = $1", name)
        if row is None:
            raise NotFoundError(f"no agent named '{name}' is registered", code="agent_not_found")
        return {"agent_id": row["id"], "name": row["name"], "owner_id": row["owner_id"]}

    def owner_assertion(self, user: dict[str, Any], agent: dict[str, Any], ttl: float = 300) -> str:
        """An RS256 owner assertion for ``agent`` (its owner must be ``user``)."""
        if agent["owner_id"] != user["id"]:
            raise PermissionDeniedError(f"you do not own agent '{agent['name']}'")
        token, _ = self.signer.sign({"sub": user["id"], "aud": agent["name"], "typ": "owner"}, ttl)
        return token

    # --- money ---------------------------------------------------------------------------

    async def idempotent(
        self, user_id: str, key: str | None, request: dict[str, Any], operation: Operation
    ) -> dict[str, Any]:
        """Run ``operation(connection)`` in one transaction, once per ``(user_id, key)``.

        A repeated key with the same request returns the stored answer (a concurrent repeat
        waits for the first to commit); with a different request it raises
        IdempotencyConflictError. An operation that raises stores nothing, so a retry runs it
        again. ``key`` ``None`` runs the operation without this protection.
        """
        request_hash = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
        async with self.database.acquire() as connection, connection.transaction():
            if key is not None:
                first = await connection.fetchval(
                    "INSERT INTO platform_idempotency (user_id, key, request_hash) VALUES ($1, $2, $3) "
                    "ON CONFLICT DO NOTHING RETURNING true",
                    user_id, key, request_hash,
                )
                if not first:
                    stored = await connection.fetchrow(
                        "SELECT request_hash, response FROM platform_idempotency WHERE user_id = $1 AND key = $2",
                        user_id, key,
                    )
                    if stored["request_hash"] != request_hash:
                        raise IdempotencyConflictError(
                            f"Idempotency-Key '{key}' was used for a different request"
                        )
                    return json.loads(stored["response"])
            result = await operation(connection)
            if key is not None:
                await connection.execute(
                    "UPDATE platform_idempotency SET response = $3 WHERE user_id = $1 AND key = $2",
                    user_id, key, json.dumps(result),
                )
            return result

    @staticmethod
    async def transfer(
        connection: asyncpg.Connection,
        kind: str,
        moves: dict[str, int],
        *,
        created_by: str | None = None,
        lock_id: str | None = None,
        token_id: str | None = None,
        charge_type: str | None = None,
        description: str | None = None,
    ) -> int:
        """Record one ledger transaction of ``moves`` (account -> micro-dollars, summing to
        zero; zero moves are left out) inside the caller's transaction; returns its id.

        Raises InsufficientBalanceError when a debit would overdraw its account.
        """
        if sum(moves.values()) != 0:
            raise ValueError(f"unbalanced ledger transaction: {moves}")
        transaction_id = await connection.fetchval(
            "INSERT INTO platform_transactions (kind, lock_id, token_id, charge_type, description, created_by) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            kind, lock_id, token_id, charge_type, description, created_by,
        )
        for account, amount in sorted(moves.items()):
            if amount == 0:
                continue
            try:
                updated = await connection.fetchval(
                    "UPDATE platform_accounts SET balance = balance + $2 WHERE id = $1 RETURNING true",
                    account, amount,
                )
            except asyncpg.CheckViolationError:
                raise InsufficientBalanceError(
                    f"insufficient balance: {to_dollars(-amount)} dollars asked of {_describe(account)}"
                ) from None
            if not updated:
                raise RuntimeError(f"ledger account {account} does not exist")
            await connection.execute(
                "INSERT INTO platform_entries (transaction_id, account_id, amount) VALUES ($1, $2, $3)",
                transaction_id, account, amount,
            )
        return transaction_id

    async def add_credits(self, user_reference: str, micros: int) -> dict[str, Any]:
        """Fund the user's account from ``credits``: ``{user_id, balance}``."""
        user = await self.find_user(user_reference)
        async with self.database.acquire() as connection, connection.transaction():
            await self.transfer(
                connection, "credit", {"credits": -micros, f"user:{user['id']}": micros}, created_by="admin"
            )
            balance = await self._balance(connection, f"user:{user['id']}")
        return {"user_id": user["id"], "balance": to_dollars(balance)}

    async def mint_token(
        self,
        user_reference: str,
        micros: int,
        audience: str,
        *,
        max_depth: int = 2,
        ttl: float = 3600,
    ) -> dict[str, Any]:
        """A payment token for agent ``audience`` holding ``micros`` taken from the user's
        balance: ``{token, token_id, balance, audience, expires_at}``.

        Raises InsufficientBalanceError, NotFoundError (user or agent), BadRequestError
        (``max_depth`` < 0 or ``ttl`` <= 0).
        """
        if max_depth < 0:
            raise BadRequestError("max_depth must be 0 or more", param="max_depth")
        if ttl <= 0:
            raise BadRequestError("ttl must be more than 0 seconds", param="ttl")
        user = await self.find_user(user_reference)
        await self.agent(audience)
        token, claims = self.signer.sign(
            {
                "sub": user["id"],
                "aud": audience,
                "payment": {"balance": to_dollars(micros), "max_depth": max_depth, "depth": 0},
            },
            ttl,
        )
        async with self.database.acquire() as connection, connection.transaction():
            return await self._issue(
                connection, token, claims, micros, source=f"user:{user['id']}", kind="mint", created_by=user["id"]
            )

    async def _issue(
        self,
        connection: asyncpg.Connection,
        token: str,
        claims: dict[str, Any],
        micros: int,
        *,
        source: str,
        kind: str,
        created_by: str,
        parent_id: str | None = None,
    ) -> dict[str, Any]:
        """Record a signed payment token and fund it with ``micros`` from account ``source``
        (in the caller's transaction); returns ``{token, token_id, balance, audience,
        expires_at}``."""
        await self._record_token(connection, claims, parent_id=parent_id)
        await self.transfer(
            connection, kind, {source: -micros, f"token:{claims['jti']}": micros},
            created_by=created_by, token_id=claims["jti"],
        )
        return {
            "token": token,
            "token_id": claims["jti"],
            "balance": to_dollars(micros),
            "audience": claims["aud"],
            "expires_at": _iso(datetime.fromtimestamp(claims["exp"], timezone.utc)),
        }

    @staticmethod
    async def _record_token(connection: asyncpg.Connection, claims: dict[str, Any], parent_id: str | None) -> None:
        await connection.execute(
            "INSERT INTO platform_tokens (id, user_id, audience, parent_id, depth, max_depth, expires_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            claims["jti"], claims["sub"], claims["aud"], parent_id,
            claims["payment"]["depth"], claims["payment"]["max_depth"],
            datetime.fromtimestamp(claims["exp"], timezone.utc),
        )
        await connection.execute("INSERT INTO platform_accounts (id) VALUES ($1)", f"token:{claims['jti']}")

    async def _open_token(
        self, connection: asyncpg.Connection, token: Any, *, audience: str | None = None
    ) -> dict[str, Any]:
        """Claims of a valid, unclosed payment token (TokenError otherwise)."""
        claims = self.signer.verify(token, audience=audience)
        row = await connection.fetchrow("SELECT closed_at FROM platform_tokens WHERE id = $1", claims["jti"])
        if row is None:
            raise TokenError("the payment token is unknown to this platform")
        if row["closed_at"] is not None:
            raise TokenError("the payment token has been released", code="payment_token_closed")
        return claims

    async def _owner_of(self, connection: asyncpg.Connection, agent_name: str) -> str | None:
        return await connection.fetchval("SELECT owner_id FROM platform_agents WHERE name = $1", agent_name)

    async def _balance(self, connection: asyncpg.Connection, account: str) -> int:
        return await connection.fetchval("SELECT balance FROM platform_accounts WHERE id = $1", account) or 0

    async def _locked(self, connection: asyncpg.Connection, token_ids: list[str]) -> int:
        return await connection.fetchval(
            "SELECT coalesce(sum(a.balance), 0)::bigint FROM platform_locks l "
            "JOIN platform_accounts a ON a.id = 'lock:' || l.id "
            "WHERE l.token_id = ANY($1::text[]) AND l.status = 'open'",
            token_ids,
        )

    async def verify(self, token: Any, expected_audience: str | None = None) -> dict[str, Any]:
        """What a valid token can pay: ``{valid: true, tokenId, userId, audience, balance,
        lockedAmountDollars, maxDepth, depth, expiresAt}``; TokenError otherwise."""
        async with self.database.acquire() as connection:
            claims = await self._open_token(connection, token, audience=expected_audience)
            balance = await self._balance(connection, f"token:{claims['jti']}")
            locked = await self._locked(connection, [claims["jti"]])
        return {
            "valid": True,
            "tokenId": claims["jti"],
            "userId": claims["sub"],
            "audience": claims["aud"],
            "balance": to_dollars(balance),
            "lockedAmountDollars": to_dollars(locked),
            "maxDepth": claims["payment"]["max_depth"],
            "depth": claims["payment"]["depth"],
            "expiresAt": _iso(datetime.fromtimestamp(claims["exp"], timezone.utc)),
        }

    async def lock(self, caller: dict[str, Any], token: Any, micros: int, key: str | None) -> dict[str, Any]:
        """Lock ``micros`` of the token for one request of its agent, whose owner calls:
        ``{lockId, lockedAmountDollars, tokenId}``. TokenError, PermissionDeniedError (the
        caller does not own the token's agent), InsufficientBalanceError."""

        async def operation(connection: asyncpg.Connection) -> dict[str, Any]:
            claims = await self._open_token(connection, token)
            if await self._owner_of(connection, claims["aud"]) != caller["id"]:
                raise PermissionDeniedError(
                    f"only the owner of agent '{claims['aud']}' may lock its payment tokens"
                )
            lock_id = _new_id("lck")
            await connection.execute(
                "INSERT INTO platform_locks (id, token_id, payee_id, status) VALUES ($1, $2, $3, 'open')",
                lock_id, claims["jti"], caller["id"],
            )
            await connection.execute("INSERT INTO platform_accounts (id) VALUES ($1)", f"lock:{lock_id}")
            await self.transfer(
                connection, "lock", {f"token:{claims['jti']}": -micros, f"lock:{lock_id}": micros},
                created_by=caller["id"], lock_id=lock_id, token_id=claims["jti"],
            )
            return {"lockId": lock_id, "lockedAmountDollars": to_dollars(micros), "tokenId": claims["jti"]}

        return await self.idempotent(caller["id"], key, {"op": "lock", "token": token, "amount": micros}, operation)

    async def _open_lock(self, connection: asyncpg.Connection, caller: dict[str, Any], lock_id: str) -> asyncpg.Record:
        lock = await connection.fetchrow("SELECT * FROM platform_locks WHERE id = $1 FOR UPDATE", lock_id)
        if lock is None or lock["payee_id"] != caller["id"]:
            raise NotFoundError(f"no lock '{lock_id}' of yours", code="lock_not_found")
        if lock["status"] != "open":
            raise BadRequestError(f"lock '{lock_id}' is {lock['status']} already", code="lock_closed")
        return lock

    async def extend_lock(
        self, caller: dict[str, Any], lock_id: str, micros: int, key: str | None
    ) -> dict[str, Any]:
        """Move ``micros`` more from the lock's token into the lock: ``{lockId,
        lockedAmountDollars}`` (the lock's new total)."""

        async def operation(connection: asyncpg.Connection) -> dict[str, Any]:
            lock = await self._open_lock(connection, caller, lock_id)
            await self.transfer(
                connection, "lock", {f"token:{lock['token_id']}": -micros, f"lock:{lock_id}": micros},
                created_by=caller["id"], lock_id=lock_id, token_id=lock["token_id"],
            )
            total = await self._balance(connection, f"lock:{lock_id}")
            return {"lockId": lock_id, "lockedAmountDollars": to_dollars(total)}

        return await self.idempotent(
            caller["id"], key, {"op": "extend", "lock": lock_id, "amount": micros}, operation
        )

    async def settle(
        self,
        caller: dict[str, Any],
        lock_id: str,
        charges: list[tuple[int, str | None, str]],
        *,
        release: bool,
        key: str | None,
    ) -> dict[str, Any]:
        """Charge ``charges`` (``(micros, description, charge_type)`` each, one ledger
        transaction each) from the lock to the caller (the agent's owner), then, with
        ``release``, return the rest to the token and close the lock.

        Returns ``{lockId, chargedAmountDollars, releasedAmountDollars,
        lockedAmountDollars, status}``. InsufficientBalanceError when the charges exceed
        what is locked (nothing is charged then).
        """

        async def operation(connection: asyncpg.Connection) -> dict[str, Any]:
            lock = await self._open_lock(connection, caller, lock_id)
            charged = 0
            for micros, description, charge_type in charges:
                await self.transfer(
                    connection, "settle", {f"lock:{lock_id}": -micros, f"user:{caller['id']}": micros},
                    created_by=caller["id"], lock_id=lock_id, token_id=lock["token_id"],
                    charge_type=charge_type, description=description,
                )
                charged += micros
            released = 0
            status = "open"
            if release:
                released = await self._release_lock(connection, caller["id"], lock, "settled")
                status = "settled"
            left = await self._balance(connection, f"lock:{lock_id}")
            return {
                "lockId": lock_id,
                "chargedAmountDollars": to_dollars(charged),
                "releasedAmountDollars": to_dollars(released),
                "lockedAmountDollars": to_dollars(left),
                "status": status,
            }

        request = {"op": "settle", "lock": lock_id, "charges": charges, "release": release}
        return await self.idempotent(caller["id"], key, request, operation)

    @staticmethod
    async def _refund_account(connection: asyncpg.Connection, token_id: str) -> str:
        """Where what is left for token ``token_id`` goes: the token while it is open, else
        (released) its parent's refund account for a delegated token, else its payer."""
        while True:
            token = await connection.fetchrow(
                "SELECT user_id, parent_id, closed_at FROM platform_tokens WHERE id = $1", token_id
            )
            if token["closed_at"] is None:
                return f"token:{token_id}"
            if token["parent_id"] is None:
                return f"user:{token['user_id']}"
            token_id = token["parent_id"]

    async def _release_lock(
        self, connection: asyncpg.Connection, created_by: str, lock: asyncpg.Record, status: str
    ) -> int:
        rest = await self._balance(connection, f"lock:{lock['id']}")
        target = await self._refund_account(connection, lock["token_id"])
        await self.transfer(
            connection, "release", {f"lock:{lock['id']}": -rest, target: rest},
            created_by=created_by, lock_id=lock["id"], token_id=lock["token_id"],
        )
        await connection.execute(
            "UPDATE platform_locks SET status = $2, closed_at = now() WHERE id = $1", lock["id"], status
        )
        return rest

    async def release(
        self, caller: dict[str, Any], *, lock_id: str | None, token: Any, key: str | None
    ) -> dict[str, Any]:
        """Release a lock (its rest goes back to its token) or a token (it closes, and its
        unlocked balance goes back to its parent token for a delegated one, else to the paying
        user; the payer or the owner of its agent may). What a lock of a closed token gives
        back later follows the same way. Returns ``{releasedAmountDollars, lockId | tokenId}``."""

        async def operation(connection: asyncpg.Connection) -> dict[str, Any]:
            if lock_id is not None:
                lock = await self._open_lock(connection, caller, lock_id)
                rest = await self._release_lock(connection, caller["id"], lock, "released")
                return {"lockId": lock_id, "releasedAmountDollars": to_dollars(rest)}
            claims = await self._open_token(connection, token)
            allowed = {claims["sub"], await self._owner_of(connection, claims["aud"])}
            parent_audience = await connection.fetchval(
                "SELECT p.audience FROM platform_tokens t JOIN platform_tokens p ON p.id = t.parent_id WHERE t.id = $1",
                claims["jti"],
            )
            if parent_audience is not None:  # the delegating agent's owner
                allowed.add(await self._owner_of(connection, parent_audience))
            if caller["id"] not in allowed:
                raise PermissionDeniedError(
                    "only the payer, the owner of the token's agent or the owner of the agent that delegated it may release it"
                )
            await connection.execute("SELECT 1 FROM platform_tokens WHERE id = $1 FOR UPDATE", claims["jti"])
            await connection.execute("UPDATE platform_tokens SET closed_at = now() WHERE id = $1", claims["jti"])
            rest = await self._balance(connection, f"token:{claims['jti']}")
            target = await self._refund_account(connection, claims["jti"])
            await self.transfer(
                connection, "release", {f"token:{claims['jti']}": -rest, target: rest},
                created_by=caller["id"], token_id=claims["jti"],
            )
            return {"tokenId": claims["jti"], "releasedAmountDollars": to_dollars(rest)}

        request = {"op": "release", "lock": lock_id, "token": token}
        return await self.idempotent(caller["id"], key, request, operation)

    async def delegate(
        self, caller: dict[str, Any], parent_token: Any, delegate_to: str, micros: int, key: str | None
    ) -> dict[str, Any]:
        """A child token for agent ``delegate_to`` holding ``micros`` carved out of the parent
        token's balance; the caller must own the parent token's agent, and the parent's depth
        must be below its ``max_depth``. The child expires no later than the parent.

        Returns what minting does (``{token, token_id, balance, audience, expires_at}``) plus
        ``depth`` and ``max_depth``.
        """

        async def operation(connection: asyncpg.Connection) -> dict[str, Any]:
            claims = await self._open_token(connection, parent_token)
            if await self._owner_of(connection, claims["aud"]) != caller["id"]:
                raise PermissionDeniedError(
                    f"only the owner of agent '{claims['aud']}' may delegate its payment tokens"
                )
            if await self._owner_of(connection, delegate_to) is None:
                raise NotFoundError(f"no agent named '{delegate_to}' is registered", code="agent_not_found")
            depth = claims["payment"]["depth"] + 1
            if depth > claims["payment"]["max_depth"]:
                raise PermissionDeniedError(
                    f"the payment token may be delegated {claims['payment']['max_depth']} level(s) deep at most",
                    code="max_depth_exceeded",
                )
            ttl = claims["exp"] - int(datetime.now(timezone.utc).timestamp())
            child, child_claims = self.signer.sign(
                {
                    "sub": claims["sub"],
                    "aud": delegate_to,
                    "payment": {
                        "balance": to_dollars(micros),
                        "max_depth": claims["payment"]["max_depth"],
                        "depth": depth,
                    },
                },
                max(ttl, 1),
            )
            issued = await self._issue(
                connection, child, child_claims, micros, source=f"token:{claims['jti']}", kind="delegate",
                created_by=caller["id"], parent_id=claims["jti"],
            )
            return {**issued, "depth": depth, "max_depth": claims["payment"]["max_depth"]}

        request = {"op": "delegate", "parent": parent_token, "to": delegate_to, "amount": micros}
        return await self.idempotent(caller["id"], key, request, operation)

    async def balance(self, *, user_reference: str | None = None, token: str | None = None) -> dict[str, Any]:
        """``{balance, locked}`` in dollars of a user (what is in its account; locked: its
        tokens' open locks) or of a token (its unlocked balance; locked: its open locks)."""
        async with self.database.acquire() as connection:
            if token is not None:
                claims = self.signer.verify(token)
                token_ids = [claims["jti"]]
                balance = await self._balance(connection, f"token:{claims['jti']}")
            else:
                user = await self.find_user(user_reference or "")
                token_ids = [
                    r["id"] for r in await connection.fetch("SELECT id FROM platform_tokens WHERE user_id = $1", user["id"])
                ]
                balance = await self._balance(connection, f"user:{user['id']}")
            locked = await self._locked(connection, token_ids)
        return {"balance": to_dollars(balance), "locked": to_dollars(locked)}


def _describe(account: str) -> str:
    kind, _, ident = account.partition(":")
    return {"user": f"user {ident}", "token": "the payment token", "lock": f"lock {ident}"}.get(kind, account)
