"""Robutler memory skills, registered through the ``robutler`` entry point as any third-party
package would: ``short_term_memory`` (conversations and the context window),
``long_term_memory`` (facts on PostgreSQL) and ``vector_memory`` (semantic memory on Milvus or
pgvector). Memory is partitioned by agent and caller (:func:`partition`)."""

from robutler_core import hookimpl

from .identity import partition
from .local import LocalEmbeddingSkill
from .long_term import LongTermMemorySkill
from robutler_core.paths import data_dir
from .short_term import ShortTermMemorySkill
from .vector import VectorMemorySkill

__all__ = [
    "LocalEmbeddingSkill",
    "LongTermMemorySkill",
    "ShortTermMemorySkill",
    "VectorMemorySkill",
    "data_dir",
    "partition",
]


@hookimpl
def register_skills(register):  # type: ignore[no-untyped-def]
    # One line per skill module (long_term, vector, short_term) as each lands.
    register(LongTermMemorySkill, name="long_term_memory")
    register(ShortTermMemorySkill, name="short_term_memory")
    register(VectorMemorySkill, name="vector_memory")
    register(LocalEmbeddingSkill, name="local")
