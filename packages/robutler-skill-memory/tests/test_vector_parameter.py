"""pgvector's halfvec from a vector parameter sent as real[] (PgvectorStore's searches and
inserts): the same halfvec as pgvector's text input of the float64 values (which reads each
value as a float32, then rounds it to float16), and a clear error for NaN, infinities and
values beyond float32."""

import math
import random

import asyncpg
import pytest

from robutler_skill_memory.pgvector_store import _HALFVEC


@pytest.fixture
async def connection(embedded_postgres):
    connection = await asyncpg.connect(embedded_postgres)
    await connection.execute("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public")
    yield connection
    await connection.close()


async def test_the_halfvec_is_the_one_of_pgvectors_text_input(connection):
    rng = random.Random(7)
    same = f"SELECT {_HALFVEC.format(1)} = $2::text::public.halfvec, {_HALFVEC.format(1)}::text"
    for scale in (1e-6, 1e-3, 1.0, 1e3, 6e4):
        for _ in range(50):
            vector = [rng.uniform(-1, 1) * scale for _ in range(384)]
            equal, text = await connection.fetchrow(same, vector, "[" + ",".join(map(repr, vector)) + "]")
            assert equal, text
    # and not merely equal under halfvec's comparison: the same text too
    vector = [0.1, -0.25, 1 / 3]
    assert await connection.fetchval(f"SELECT {_HALFVEC.format(1)}::text", vector) == await connection.fetchval(
        "SELECT $1::text::public.halfvec::text", "[0.1,-0.25,0.3333333333333333]")


@pytest.mark.parametrize(("value", "error"), [
    (math.nan, "NaN not allowed in halfvec"),
    (math.inf, "infinite value not allowed in halfvec"),
    (-math.inf, "infinite value not allowed in halfvec"),
    (1e6, "out of range for type halfvec"),  # a float32, but beyond float16
    (1e300, "out of float32 range"),  # asyncpg refuses it before sending
])
async def test_values_pgvector_cannot_hold_are_clear_errors(connection, value, error):
    with pytest.raises((asyncpg.PostgresError, asyncpg.DataError), match=error):
        await connection.fetchval(f"SELECT {_HALFVEC.format(1)}", [0.5, value])
