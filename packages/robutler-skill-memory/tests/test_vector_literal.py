"""pgvector's text input for a query vector: exactly the float32 values pgvector reads (it
parses each value with strtof before rounding to float16), whatever the float64 input."""

import math
import random
import struct

import pytest

from robutler_skill_memory.pgvector_store import _vector_literal


def float32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def parsed(literal: str) -> list[float]:
    assert literal.startswith("[") and literal.endswith("]")
    return [float(part) for part in literal[1:-1].split(",")]


def test_each_value_reads_back_as_the_float32_of_the_input():
    rng = random.Random(7)
    for scale in (1e-6, 1e-3, 1.0, 1e3, 6e4):
        vector = [rng.uniform(-1, 1) * scale for _ in range(384)]
        # float(text) then float32 is what strtof gives: the same float32 as the input's.
        assert [float32(v) for v in parsed(_vector_literal(vector))] == [float32(v) for v in vector]


def test_nan_infinity_and_values_beyond_float32_stay_for_pgvector_to_refuse():
    assert _vector_literal([math.nan, 1.0]) == "[nan,1]"
    assert _vector_literal([math.inf, -math.inf]) == "[inf,-inf]"
    assert parsed(_vector_literal([1e300, 0.5])) == [1e300, 0.5]


@pytest.mark.parametrize("dimension", [1, 3, 384])
def test_the_literal_has_one_value_per_dimension(dimension):
    assert len(parsed(_vector_literal([0.25] * dimension))) == dimension
