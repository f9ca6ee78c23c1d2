"""The platform service over HTTP, on a real PostgreSQL: API keys, JWKS, payment tokens, locks,
settlement, delegation, idempotency and a balance that never goes negative."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from robutler_skill_platform.service.tokens import Signer


# --- API keys ---------------------------------------------------------------------------------


async def test_the_caller_of_an_api_key_as_bearer_or_x_api_key(world):
    async with world.client(world.owner_key) as client:
        assert (await client.get("/api/user")).json() == {"user": world.owner}
    async with world.client(**{"X-API-Key": world.payer_key}) as client:
        assert (await client.get("/api/user")).json()["user"]["name"] == "paul"


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer rbt_not-a-key"}, "invalid_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
    ],
)
async def test_no_or_a_bad_key_is_401(world, headers, code):
    async with world.client(**headers) as client:
        response = await client.get("/api/user")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


async def test_a_revoked_key_is_401_and_keys_are_stored_hashed(world):
    created = await world.store.create_key("paul")
    assert (await world.store.revoke_key(created["key_id"])) == {"key_id": created["key_id"], "revoked": True}
    async with world.client(created["key"]) as client:
        assert (await client.get("/api/user")).status_code == 401
    async with world.store.database.acquire() as connection:
        stored = await connection.fetch("SELECT key_hash FROM platform_api_keys")
    assert all(created["key"] not in row["key_hash"] for row in stored)


# --- tokens -----------------------------------------------------------------------------------


async def test_tokens_verify_against_the_published_jwks(world):
    minted = await world.mint("1.50")
    async with world.client() as client:
        jwks = (await client.get("/api/auth/jwks")).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and "d" not in key
    assert jwt.get_unverified_header(minted["token"])["kid"] == key["kid"]
    claims = jwt.decode(
        minted["token"], jwt.PyJWK(key).key, algorithms=["RS256"], audience="shop", issuer="https://platform.test"
    )
    assert claims["sub"] == world.payer["id"]
    assert claims["payment"] == {"balance": "1.500000", "max_depth": 2, "depth": 0}
    assert {"exp", "jti", "iat"} <= set(claims)


async def test_verify_gives_the_ledger_balance(world):
    minted = await world.mint("2")
    async with world.client(world.owner_key) as client:
        response = await client.post("/api/payments/verify", json={"token": minted["token"], "expectedAudience": "shop"})
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True and body["balance"] == "2.000000" and body["lockedAmountDollars"] == "0.000000"
    assert (await world.store.balance(user_reference="paul")) == {"balance": "8.000000", "locked": "0.000000"}


def _claims(token: str) -> dict:
    """The token's claims but its times (so that signing them again sets new ones)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return {k: v for k, v in claims.items() if k not in ("exp", "iat")}


def _foreign_token(world, claims_from: str, **changes) -> str:
    claims = {**jwt.decode(claims_from, options={"verify_signature": False}), **changes}
    return jwt.encode(claims, Signer.new_private_pem(), algorithm="RS256")


@pytest.mark.parametrize(
    "make, expected_audience, code, words",
    [
        (lambda w, t: "not.a.jwt", None, "invalid_payment_token", "not valid"),
        (lambda w, t: _foreign_token(w, t), None, "invalid_payment_token", "signature is not this platform's"),
        (lambda w, t: w.store.signer.sign({**_claims(t), "iss": "https://evil.example"}, 60)[0],
         None, "invalid_payment_token", "not issued by this platform"),
        (lambda w, t: w.store.signer.sign(_claims(t), -60)[0],
         None, "payment_token_expired", "expired"),
        (lambda w, t: t, "helper", "wrong_audience", "another agent"),
    ],
    ids=["malformed", "forged", "foreign-issuer", "expired", "wrong-audience"],
)
async def test_bad_tokens_are_402_with_a_clear_message(world, make, expected_audience, code, words):
    minted = await world.mint("1")
    token = make(world, minted["token"])
    async with world.client(world.owner_key) as client:
        verified = await client.post("/api/payments/verify", json={"token": token, "expectedAudience": expected_audience})
        locked = await client.post("/api/payments/lock", json={"token": token, "amount": "0.10"})
    for response in (verified, locked) if expected_audience is None else (verified,):
        assert response.status_code == 402, response.text
        error = response.json()["error"]
        assert error["code"] == code and words in error["message"]
    await world.ledger_is_balanced()


# --- lock, settle, release ----------------------------------------------------------------------


async def test_lock_settle_and_release_move_exact_amounts(world):
    minted = await world.mint("1")
    async with world.client(world.owner_key) as client:
        lock = (await client.post("/api/payments/lock", json={"token": minted["token"], "amount": "0.30"})).json()
        assert lock["lockedAmountDollars"] == "0.300000"
        extended = await client.patch(f"/api/payments/lock/{lock['lockId']}", json={"additionalAmount": 0.1})
        assert extended.json()["lockedAmountDollars"] == "0.400000"
        assert (await world.store.balance(token=minted["token"])) == {"balance": "0.600000", "locked": "0.400000"}
        settled = await client.post(
            "/api/payments/settle",
            json={"lockId": lock["lockId"], "amount": "0.123456", "description": "2 tool calls", "chargeType": "tool"},
        )
    assert settled.json() == {
        "lockId": lock["lockId"], "chargedAmountDollars": "0.123456", "releasedAmountDollars": "0.276544",
        "lockedAmountDollars": "0.000000", "status": "settled",
    }
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.876544", "locked": "0.000000"}
    assert (await world.store.balance(user_reference="olivia"))["balance"] == "0.123456"
    async with world.store.database.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT charge_type, description FROM platform_transactions WHERE kind = 'settle'"
        )
    assert dict(row) == {"charge_type": "tool", "description": "2 tool calls"}
    await world.ledger_is_balanced()


async def test_settle_usage_items_and_keep_the_lock_open(world):
    minted = await world.mint("1")
    async with world.client(world.owner_key) as client:
        lock = (await client.post("/api/payments/lock", json={"token": minted["token"], "amount": "0.5"})).json()
        settled = (await client.post("/api/payments/settle", json={
            "lockId": lock["lockId"], "release": False,
            "usage": [{"amount": "0.01", "chargeType": "llm"}, {"amount": 0.02, "description": "search"}],
        })).json()
        assert settled["chargedAmountDollars"] == "0.030000" and settled["status"] == "open"
        assert settled["lockedAmountDollars"] == "0.470000"
        released = (await client.post("/api/payments/release", json={"lockId": lock["lockId"]})).json()
    assert released == {"lockId": lock["lockId"], "releasedAmountDollars": "0.470000"}
    assert (await world.store.balance(token=minted["token"]))["balance"] == "0.970000"


async def test_settling_more_than_is_locked_charges_nothing(world):
    minted = await world.mint("1")
    async with world.client(world.owner_key) as client:
        lock = (await client.post("/api/payments/lock", json={"token": minted["token"], "amount": "0.10"})).json()
        response = await client.post("/api/payments/settle", json={"lockId": lock["lockId"], "amount": "0.11"})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_balance"
    assert (await world.store.balance(user_reference="olivia"))["balance"] == "0.000000"
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.900000", "locked": "0.100000"}


async def test_releasing_a_token_returns_its_balance_to_the_payer_and_closes_it(world):
    minted = await world.mint("3")
    async with world.client(world.payer_key) as client:
        released = (await client.post("/api/payments/release", json={"token": minted["token"]})).json()
    assert released["releasedAmountDollars"] == "3.000000"
    assert (await world.store.balance(user_reference="paul"))["balance"] == "10.000000"
    async with world.client(world.owner_key) as client:
        response = await client.post("/api/payments/lock", json={"token": minted["token"], "amount": "0.1"})
    assert response.status_code == 402 and response.json()["error"]["code"] == "payment_token_closed"


async def test_only_the_agents_owner_may_lock_and_settle(world):
    minted = await world.mint("1")
    async with world.client(world.payer_key) as client:
        response = await client.post("/api/payments/lock", json={"token": minted["token"], "amount": "0.1"})
    assert response.status_code == 403
    async with world.client(world.owner_key) as client:
        lock = (await client.post("/api/payments/lock", json={"token": minted["token"], "amount": "0.1"})).json()
    async with world.client(world.payer_key) as client:
        response = await client.post("/api/payments/settle", json={"lockId": lock["lockId"], "amount": "0.1"})
    assert response.status_code == 404  # another caller's lock is not even named


@pytest.mark.parametrize(
    "body, param",
    [
        ({"amount": "-1"}, "amount"),
        ({"amount": "0.0000001"}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "NaN"}, "amount"),
    ],
)
async def test_bad_amounts_are_400_naming_the_field(world, body, param):
    minted = await world.mint("1")
    async with world.client(world.owner_key) as client:
        response = await client.post("/api/payments/lock", json={"token": minted["token"], **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


# --- idempotency and concurrency ------------------------------------------------------------------


async def test_a_repeated_idempotency_key_charges_once(world):
    minted = await world.mint("1")
    async with world.client(world.owner_key) as client:
        lock = (await client.post("/api/payments/lock", json={"token": minted["token"], "amount": "0.5"})).json()
        body = {"lockId": lock["lockId"], "amount": "0.2", "release": False}
        answers = await asyncio.gather(*(
            client.post("/api/payments/settle", json=body, headers={"Idempotency-Key": "req-1"}) for _ in range(5)
        ))
        assert {a.status_code for a in answers} == {200}
        assert len({a.text for a in answers}) == 1
        reused = await client.post(
            "/api/payments/settle", json={**body, "amount": "0.3"}, headers={"Idempotency-Key": "req-1"}
        )
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert (await world.store.balance(user_reference="olivia"))["balance"] == "0.200000"
    await world.ledger_is_balanced()


async def test_concurrent_locks_never_overdraw_a_token(world):
    minted = await world.mint("0.60")
    async with world.client(world.owner_key) as client:
        answers = await asyncio.gather(*(
            client.post("/api/payments/lock", json={"token": minted["token"], "amount": "0.01"}) for _ in range(100)
        ))
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 60 and statuses.count(402) == 40
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 402} == {"insufficient_balance"}
    assert (await world.store.balance(token=minted["token"])) == {"balance": "0.000000", "locked": "0.600000"}
    await world.ledger_is_balanced()


# --- delegation ---------------------------------------------------------------------------------


async def test_delegation_carves_a_child_token_out_of_the_parent(world):
    minted = await world.mint("1", max_depth=1)
    async with world.client(world.owner_key) as client:
        response = await client.post(
            "/api/payments/delegate", json={"parentToken": minted["token"], "delegateTo": "helper", "amount": "0.25"}
        )
        child = response.json()
        assert child["balance"] == "0.250000" and child["audience"] == "helper" and child["depth"] == 1
        assert child["expires_at"] <= minted["expires_at"]
        deeper = await client.post(
            "/api/payments/delegate", json={"parentToken": child["token"], "delegateTo": "shop", "amount": "0.1"}
        )
        too_much = await client.post(
            "/api/payments/delegate", json={"parentToken": minted["token"], "delegateTo": "helper", "amount": "0.76"}
        )
    assert deeper.status_code == 403 and deeper.json()["error"]["code"] == "max_depth_exceeded"
    assert too_much.status_code == 402
    assert (await world.store.balance(token=minted["token"]))["balance"] == "0.750000"
    assert (await world.store.balance(token=child["token"]))["balance"] == "0.250000"
    async with world.client(world.payer_key) as client:
        response = await client.post(
            "/api/payments/delegate", json={"parentToken": minted["token"], "delegateTo": "helper", "amount": "0.1"}
        )
    assert response.status_code == 403


async def test_owner_assertions_are_signed_for_the_owner_only(world):
    async with world.client(world.owner_key) as client:
        assertion = (await client.post("/api/auth/owner-assertion", json={"agent": "shop"})).json()["assertion"]
    claims = world.store.signer.verify(assertion, audience="shop", kind="owner")
    assert claims["sub"] == world.owner["id"] and claims["typ"] == "owner"
    async with world.client(world.payer_key) as client:
        response = await client.post("/api/auth/owner-assertion", json={"agent": "shop"})
    assert response.status_code == 403
