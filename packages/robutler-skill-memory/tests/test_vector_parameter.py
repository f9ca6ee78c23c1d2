"""pgvector's halfvec from a vector parameter sent in pgvector's binary format by the codec the
store registers on its connections (PgvectorStore's searches and inserts): the same halfvec as
pgvector's text input of the float64 values (which reads each value as a float32, then rounds
it to float16), read back as the same floats, and a clear error for NaN, infinities and values
beyond float16."""

import math
import random

import asyncpg
import pytest

from robutler_skill_memory.pgvector_store import _HALFVEC, encode_halfvec, register_halfvec


@pytest.fixture
async def connection(embedded_postgres):
    connection = await asyncpg.connect(embedded_postgres)
    await connection.execute("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public")
    await register_halfvec(connection)
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
    # 65504 is float16's largest; 65519 rounds down to it
    assert await connection.fetchval(f"SELECT {_HALFVEC.format(1)}::text", [65504.0, -65519.0]) == "[65504,-65504]"


async def test_a_halfvec_reads_back_as_its_float16_values(connection):
    assert await connection.fetchval("SELECT '[0.5,-2,0.1]'::public.halfvec") == [0.5, -2.0, 0.0999755859375]
    assert await connection.fetchval(f"SELECT {_HALFVEC.format(1)}", [1 / 3]) == [0.333251953125]


@pytest.mark.parametrize(("value", "error"), [
    (math.nan, "NaN not allowed in halfvec"),
    (math.inf, "infinite value not allowed in halfvec"),
    (-math.inf, "infinite value not allowed in halfvec"),
    (65520.0, "65520.0 is out of range for type halfvec"),  # rounds to float16's infinity
    (1e6, "1000000.0 is out of range for type halfvec"),  # a float32, but beyond float16
    (-1e300, "-1e[+]300 is out of range for type halfvec"),  # beyond float32 too
])
async def test_values_pgvector_cannot_hold_are_clear_errors(connection, value, error):
    with pytest.raises((asyncpg.PostgresError, asyncpg.DataError), match=error):
        await connection.fetchval(f"SELECT {_HALFVEC.format(1)}", [0.5, value])


def test_the_encoding_is_pgvectors_binary_format():
    # big-endian: dimension, 0, then one float16 each
    assert encode_halfvec([1.0, -2.0]) == bytes.fromhex("0002 0000 3c00 c000")
    with pytest.raises(ValueError, match="is out of range"):
        encode_halfvec([0.0, 7e4])
