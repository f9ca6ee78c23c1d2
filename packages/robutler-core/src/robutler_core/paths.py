"""Where skills keep their embedded stores on disk (PostgreSQL, Milvus Lite...).

Needs platformdirs (the ``postgres`` extra of robutler-core brings it).
"""

import os
from pathlib import Path


def data_dir() -> Path:
    """The directory of Robutler's embedded stores (PostgreSQL under ``postgres/``, Milvus Lite's
    ``milvus.db``): ``$ROBUTLER_DATA_DIR`` when set, else the platform's user data directory for
    "robutler" (``platformdirs.user_data_dir``, e.g. ``~/.local/share/robutler`` on Linux).
    Created on demand."""
    import platformdirs

    configured = os.environ.get("ROBUTLER_DATA_DIR")
    path = Path(configured).expanduser() if configured else Path(platformdirs.user_data_dir("robutler"))
    path.mkdir(parents=True, exist_ok=True)
    return path
