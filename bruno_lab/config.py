"""Where the measurement database lives: ``--db`` > ``BRUNO_LAB_DB`` > a per-user SQLite file.

The default is ``$XDG_DATA_HOME/bruno-lab/lab.db`` (``~/.local/share/bruno-lab/lab.db`` when
``XDG_DATA_HOME`` is unset), so every user gets an embedded SQLite database without set-up.
Any SQLAlchemy URL works (``postgresql+psycopg://user:pw@host/db`` for the multi-station
database). Credentials never leave this process in messages: use :func:`mask_url`.
"""

from __future__ import annotations

import os
from pathlib import Path

from bruno_lab.errors import BadInputError

ENV_VAR = "BRUNO_LAB_DB"


def default_db_path() -> Path:
    """The per-user SQLite file (its directory is created on demand by :func:`resolve_db_url`)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bruno-lab" / "lab.db"


def resolve_db_url(db: str | None = None) -> str:
    """Return the database URL to use: ``db`` if given, else ``$BRUNO_LAB_DB``, else the default.

    A plain file path (no ``://``) is taken as an SQLite file. The default file's directory is
    created so that a first ``bruno-lab db upgrade`` just works.
    """
    if db is not None and not db.strip():
        raise BadInputError("--db: empty database URL")
    url = db or os.environ.get(ENV_VAR) or None
    if url is None:
        path = default_db_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    url = url.strip()
    if not url:
        raise BadInputError(f"--db / {ENV_VAR}: empty database URL")
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return encode_userinfo(url)


def encode_userinfo(url: str) -> str:
    """``url`` with every ``@`` of its user information percent-encoded (``%40``).

    A password typed with a plain ``@`` (``lab:s3cr@t@db.lab/x``) is otherwise split at its
    first ``@`` by every URL parser: the rest of the password becomes the host name and is
    printed in the driver's "cannot resolve host" error. The user information is everything
    between ``://`` and the LAST ``@`` (as :func:`mask_url` reads it); SQLAlchemy decodes
    ``%40`` back, so the server receives the password as typed. SQLite paths are unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.startswith("sqlite"):
        return url
    at = rest.rfind("@")
    if at <= 0 or "@" not in rest[:at]:
        return url
    return f"{scheme}://{rest[:at].replace('@', '%40')}{rest[at:]}"


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and error messages.

    Works on the text, not on a parse, so that a password with unencoded ``@ : / ? #`` (which
    URL parsers split in the wrong place) is still hidden whole: the user information is
    everything between ``://`` and the LAST ``@`` before the end, and what follows its first
    ``:`` is masked. ``password=`` query parameters are masked too.
    """
    import re

    if "://" not in url:
        return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)
    scheme, rest = url.split("://", 1)
    if scheme.startswith("sqlite"):
        return url  # a file path: no credentials (and '@' or ':' may be part of the path)
    at = rest.rfind("@")
    if at >= 0:
        userinfo, host = rest[:at], rest[at + 1 :]
        user, sep, _ = userinfo.partition(":")
        rest = f"{user}:***@{host}" if sep else f"{userinfo}@{host}"
    rest = re.sub(r"(?i)(password=)[^&\s]*", r"\1***", rest)
    return f"{scheme}://{rest}"
