"""The typed ORM of the measurement database (SQLAlchemy 2.0 declarative).

wafer -> die -> device -> measurement -> stored_array -> array_chunk; fit (uses measurements);
model_card (uses fits); run groups the measurements of one wafer plan. Units live in names
(``diameter_m``, ``n_bytes``) and in the JSON keys that callers supply (``{"area_m2": ...}``).
The schema is created by the alembic migrations in ``bruno_lab/store/migrations``, never by
``create_all``; ``tests/bruno_lab/store/test_store_migrations.py`` checks the two agree.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class DeviceKind(enum.StrEnum):
    FECAP = "fecap"
    FELIF = "felif"
    RRAM = "rram"
    RRAM_ARRAY = "rram_array"  # a 1T1R crossbar: one device, one measurement per row


class RunStatus(enum.StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


class RunPurpose(enum.StrEnum):
    """Why a run was made. Calibration and reports read ``characterization`` runs unless told
    otherwise, so that programming a network onto a die never leaks into a device card."""

    CHARACTERIZATION = "characterization"
    DEPLOYMENT = "deployment"
    EVALUATION = "evaluation"
    MAINTENANCE = "maintenance"


class MeasurementStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    ABORTED = "aborted"


class CardScope(enum.StrEnum):
    WAFER = "wafer"
    LOT = "lot"


def _enum(cls: type[enum.Enum], length: int = 16) -> Enum:
    # Stored as VARCHAR holding the value ("fecap"): portable, and new members need no migration.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
    )


intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
json_dict = Annotated[dict[str, Any], mapped_column(JSON)]
tstamp = Annotated[datetime, mapped_column(UTCDateTime)]


class Base(DeclarativeBase):
    # every model here maps a Table (SQLAlchemy types __table__ as any FromClause); the
    # pattern its maintainers give so that insert(Model.__table__) type-checks
    __table__: ClassVar[Table]
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        DeviceKind: _enum(DeviceKind),
        RunStatus: _enum(RunStatus),
        RunPurpose: _enum(RunPurpose, 32),
        MeasurementStatus: _enum(MeasurementStatus),
        CardScope: _enum(CardScope),
    }

    def __repr__(self) -> str:
        pk = getattr(self, "id", None)
        return f"<{type(self).__name__} id={pk}>"


class Wafer(Base):
    __tablename__ = "wafer"
    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(128), unique=True)
    lot: Mapped[str | None] = mapped_column(String(128), index=True)
    diameter_m: Mapped[float | None]
    created_at: Mapped[tstamp] = mapped_column(default=utcnow)
    dies: Mapped[list[Die]] = relationship(back_populates="wafer", cascade="all, delete-orphan")


# Foreign keys that lead a unique constraint need no index of their own.


class Die(Base):
    __tablename__ = "die"
    __table_args__ = (UniqueConstraint("wafer_id", "x", "y"),)
    id: Mapped[intpk]
    wafer_id: Mapped[int] = mapped_column(ForeignKey("wafer.id", ondelete="CASCADE"))
    x: Mapped[int]
    y: Mapped[int]
    label: Mapped[str] = mapped_column(String(64))
    wafer: Mapped[Wafer] = relationship(back_populates="dies")
    devices: Mapped[list[Device]] = relationship(back_populates="die", cascade="all, delete-orphan")


class Device(Base):
    __tablename__ = "device"
    __table_args__ = (UniqueConstraint("die_id", "site"),)
    id: Mapped[intpk]
    die_id: Mapped[int] = mapped_column(ForeignKey("die.id", ondelete="CASCADE"))
    site: Mapped[str] = mapped_column(String(64))
    kind: Mapped[DeviceKind] = mapped_column(index=True)
    geometry: Mapped[json_dict]  # keys carry units: {"area_m2": 2.5e-11}
    die: Mapped[Die] = relationship(back_populates="devices")


class Run(Base):
    __tablename__ = "run"
    id: Mapped[intpk]
    plan: Mapped[json_dict]
    operator: Mapped[str] = mapped_column(String(128))
    station: Mapped[json_dict]  # station snapshot: instruments, envelope, host
    software_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[RunStatus]
    purpose: Mapped[RunPurpose] = mapped_column(index=True)
    started_at: Mapped[tstamp] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # One writer per run: the process that holds the lease heartbeats it; a stale lease (the
    # holder died) may be taken over. Null when nobody holds the run.
    lease_holder: Mapped[str | None] = mapped_column(String(255))
    lease_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Measurement(Base):
    __tablename__ = "measurement"
    __table_args__ = (UniqueConstraint("run_id", "key"),)
    id: Mapped[intpk]
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id"), index=True)
    key: Mapped[str | None] = mapped_column(String(255))  # idempotency key, unique per run
    protocol: Mapped[str] = mapped_column(String(64), index=True)
    parameters: Mapped[json_dict]  # {"amplitude_v": 3.0, "width_s": 1e-6}
    instruments: Mapped[json_dict]  # role -> {"idn": ..., "settings": {...}}
    started_at: Mapped[tstamp]
    finished_at: Mapped[tstamp]
    status: Mapped[MeasurementStatus]
    error: Mapped[str | None] = mapped_column(Text)
    scalars: Mapped[dict[str, float]] = mapped_column(JSON)  # {"pr_c_m2": 0.21}
    arrays: Mapped[list[StoredArray]] = relationship(
        back_populates="measurement", cascade="all, delete-orphan", passive_deletes=True
    )


class StoredArray(Base):
    """One named array of a measurement; its bytes live in ``array_chunk`` rows."""

    __tablename__ = "stored_array"
    __table_args__ = (UniqueConstraint("measurement_id", "name"),)
    id: Mapped[intpk]
    measurement_id: Mapped[int] = mapped_column(ForeignKey("measurement.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))  # "current_a", "time_s"
    dtype: Mapped[str] = mapped_column(String(16))  # numpy little-endian str: "<f8"
    shape: Mapped[list[int]] = mapped_column(JSON)
    unit: Mapped[str] = mapped_column(String(32))  # "A", "s", "" for none
    n_bytes: Mapped[int] = mapped_column(BigInteger)
    n_chunks: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    measurement: Mapped[Measurement] = relationship(back_populates="arrays")


class ArrayChunk(Base):
    """``seq``-th slice of an array's raw bytes (little-endian, C order)."""

    __tablename__ = "array_chunk"
    array_id: Mapped[int] = mapped_column(
        ForeignKey("stored_array.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class FitMeasurement(Base):
    __tablename__ = "fit_measurement"
    fit_id: Mapped[int] = mapped_column(ForeignKey("fit.id", ondelete="CASCADE"), primary_key=True)
    measurement_id: Mapped[int] = mapped_column(
        ForeignKey("measurement.id"), primary_key=True, index=True
    )


class Fit(Base):
    __tablename__ = "fit"
    id: Mapped[intpk]
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, float]] = mapped_column(JSON)  # {"ps_c_m2": 0.22}
    uncertainties: Mapped[dict[str, float]] = mapped_column(JSON)  # 1-sigma, same units
    goodness: Mapped[json_dict]  # {"rmse_a": ..., "r2": ...}
    flags: Mapped[list[str]] = mapped_column(JSON)  # ["defective", "stuck"]
    created_at: Mapped[tstamp] = mapped_column(default=utcnow)
    measurement_links: Mapped[list[FitMeasurement]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def measurement_ids(self) -> list[int]:
        return sorted(link.measurement_id for link in self.measurement_links)


class ModelCardFit(Base):
    __tablename__ = "model_card_fit"
    card_id: Mapped[int] = mapped_column(
        ForeignKey("model_card.id", ondelete="CASCADE"), primary_key=True
    )
    fit_id: Mapped[int] = mapped_column(ForeignKey("fit.id"), primary_key=True, index=True)


class ModelCard(Base):
    """One version of the population statistics of a device kind on a wafer or lot."""

    __tablename__ = "model_card"
    __table_args__ = (UniqueConstraint("device_kind", "scope", "scope_id", "version"),)
    id: Mapped[intpk]
    device_kind: Mapped[DeviceKind]
    scope: Mapped[CardScope]
    scope_id: Mapped[str] = mapped_column(String(128))  # wafer name or lot name
    version: Mapped[int]
    body: Mapped[json_dict]  # a bruno_lab.cards.ModelCardBody, validated on write
    code_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[tstamp] = mapped_column(default=utcnow)
    fit_links: Mapped[list[ModelCardFit]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    @property
    def fit_ids(self) -> list[int]:
        return sorted(link.fit_id for link in self.fit_links)

    def card(self) -> Any:
        """The body as a validated ``bruno_lab.cards.ModelCardBody``."""
        from bruno_lab.cards import ModelCardBody

        return ModelCardBody.model_validate(self.body)
