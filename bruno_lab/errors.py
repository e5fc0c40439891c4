"""The one small error tree of bruno-lab.

Library code raises these; only the CLI maps them to exit codes. A ``BadInputError`` (exit 2)
always names what was wrong and where (file, field, allowed values), so a user can fix it.
"""

from __future__ import annotations


class BrunoLabError(Exception):
    """Base of every error bruno-lab raises on purpose. Exit code 1: the job failed."""

    exit_code: int = 1


class BadInputError(BrunoLabError):
    """The user's input is wrong: a plan, a unit, a range, a file, a database state. Exit 2."""

    exit_code = 2


class PlanError(BadInputError):
    """A plan or config file is malformed; the message names the file, field and allowed values."""


class UnitError(BadInputError):
    """A quantity has the wrong unit or cannot be parsed."""


class ModelCardError(BadInputError):
    """A model card is missing, malformed or does not fit its schema."""


class EnvelopeError(BadInputError):
    """A request lies beyond a safety envelope; it was refused before reaching an instrument."""


class SchemaError(BadInputError):
    """The database is not migrated to the schema this code needs (run ``bruno-lab db upgrade``)."""


class DataError(BadInputError):
    """Stored or supplied data is missing or corrupt (a bad array checksum, no measurements)."""


class InstrumentError(BrunoLabError):
    """An instrument refused, failed or did not answer; names the instrument and command."""


class MissingExtraError(BrunoLabError, ImportError):
    """A feature needs an optional dependency that is not installed; names the extra to install.

    Also an ``ImportError``, so code that probes for the package keeps working."""
