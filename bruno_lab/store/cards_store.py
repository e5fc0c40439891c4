"""Fits and model cards in the store: provenance from a card back to fits and measurements.

A model card version is never overwritten: ``add_model_card`` always inserts version
``max + 1`` for its (device kind, scope, scope id); the unique constraint on those four columns
makes two concurrent writers end with distinct versions (the loser retries).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from bruno_lab.errors import DataError, ModelCardError
from bruno_lab.store.engine import begin_write, finite_or_none, inserted_id
from bruno_lab.store.models import (
    CardScope,
    DeviceKind,
    Fit,
    FitMeasurement,
    ModelCard,
    ModelCardFit,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from bruno_lab.cards import ModelCardBody

log = logging.getLogger(__name__)
_MAX_VERSION_RETRIES = 20


class CardsMixin:
    """Fit and model-card methods of :class:`bruno_lab.store.Store`."""

    engine: Engine

    def session(self) -> Any:  # provided by Store
        raise NotImplementedError

    # -- fits -----------------------------------------------------------------------------

    def add_fit(
        self,
        *,
        device_id: int,
        model_name: str,
        model_version: str,
        parameters: Mapping[str, float],
        uncertainties: Mapping[str, float],
        goodness: Mapping[str, Any],
        measurement_ids: Sequence[int],
        flags: Sequence[str],
    ) -> int:
        """Store one device's fit with the measurements it used; return its id.

        ``parameters`` and ``uncertainties`` (1 sigma) are in the SI units their names say;
        non-finite values are stored as null.
        """
        row, mids = _fit_row(
            {
                "device_id": device_id,
                "model_name": model_name,
                "model_version": model_version,
                "parameters": parameters,
                "uncertainties": uncertainties,
                "goodness": goodness,
                "measurement_ids": measurement_ids,
                "flags": flags,
            }
        )
        try:
            with self.engine.begin() as conn:
                return _insert_fit(conn, row, mids)
        except IntegrityError as exc:
            raise DataError(
                f"fit of device {device_id}: unknown device or measurements {mids}: {exc.orig}"
            ) from exc

    def get_fit(self, fit_id: int) -> Fit:
        with self.session() as sess:
            fit = sess.get(Fit, fit_id, options=[selectinload(Fit.measurement_links)])
            if fit is None:
                raise DataError(f"fit {fit_id} does not exist")
            return fit

    def list_fits(
        self, *, device_ids: Sequence[int] | None = None, model_name: str | None = None
    ) -> list[Fit]:
        """Fits, oldest first, optionally of some devices and one model."""
        stmt = select(Fit).options(selectinload(Fit.measurement_links)).order_by(Fit.id)
        if device_ids is not None:
            stmt = stmt.where(Fit.device_id.in_(list(device_ids)))
        if model_name is not None:
            stmt = stmt.where(Fit.model_name == model_name)
        with self.session() as sess:
            return list(sess.scalars(stmt))

    # -- model cards ----------------------------------------------------------------------

    def add_model_card(
        self, body: Mapping[str, Any] | ModelCardBody, fit_ids: Sequence[int], code_version: str
    ) -> ModelCard:
        """Validate ``body`` and store it as the next version for its kind and scope.

        Returns the new ``ModelCard`` row (``id``, ``version``, ``fit_ids``, ``card()``).
        A body that does not fit the schema raises ModelCardError naming the field.
        """
        return self.add_calibration([], body, code_version, fit_ids=fit_ids)[1]

    def add_calibration(
        self,
        fits: Sequence[Mapping[str, Any]],
        body: Mapping[str, Any] | ModelCardBody,
        code_version: str,
        *,
        fit_ids: Sequence[int] = (),
    ) -> tuple[list[int], ModelCard]:
        """Store a calibration's fits and the card built from them in one transaction.

        Each of ``fits`` has the keyword arguments of :meth:`add_fit`. The card links to those
        fits and to ``fit_ids`` (fits stored earlier). A crash or an error leaves nothing: no
        fits without their card. Returns (new fit ids, the new ``ModelCard`` row).
        """
        from bruno_lab.cards import ModelCardBody, parse_card

        card = body if isinstance(body, ModelCardBody) else parse_card(dict(body))
        kind = DeviceKind(card.device_kind)
        scope = CardScope(card.scope)
        doc = card.model_dump(mode="json")
        table, links = ModelCard.__table__, ModelCardFit.__table__
        for attempt in range(_MAX_VERSION_RETRIES):
            version = None
            try:
                with begin_write(self.engine) as conn:  # holds the SQLite write lock throughout
                    new_ids = [_insert_fit(conn, *_fit_row(f)) for f in fits]
                    fids = sorted({int(x) for x in fit_ids} | set(new_ids))
                    latest = conn.scalar(
                        select(func.max(table.c.version)).where(
                            table.c.device_kind == kind,
                            table.c.scope == scope,
                            table.c.scope_id == card.scope_id,
                        )
                    )
                    version = (latest or 0) + 1
                    row = {
                        "device_kind": kind,
                        "scope": scope,
                        "scope_id": card.scope_id,
                        "version": version,
                        "body": doc,
                        "code_version": code_version,
                        "created_at": utcnow(),
                    }
                    card_id = inserted_id(conn.execute(insert(table), row))
                    if fids:
                        conn.execute(
                            insert(links), [{"card_id": card_id, "fit_id": f} for f in fids]
                        )
                log.info("model card %s v%s stored (id %s)", card.scope_id, version, card_id)
                return new_ids, self.get_model_card(card_id)
            except IntegrityError as exc:
                if version is None or not self._version_taken(kind, scope, card.scope_id, version):
                    raise DataError(
                        f"model card {card.scope_id}: unknown fits, devices or measurements "
                        f"referenced: {exc.orig}"
                    ) from exc
                log.info("model card version race, retry %d", attempt + 1)
                # writers that lost together must not retry in lockstep (they would collide
                # again on PostgreSQL, where no write lock serializes them): a random backoff
                time.sleep(random.uniform(0.0, 0.01 * (attempt + 1)))
        raise DataError(f"model card {card.scope_id}: could not allocate a version")

    def _version_taken(self, kind: DeviceKind, scope: CardScope, scope_id: str, v: int) -> bool:
        with self.session() as sess:
            return (
                sess.scalar(
                    select(ModelCard.id).where(
                        ModelCard.device_kind == kind,
                        ModelCard.scope == scope,
                        ModelCard.scope_id == scope_id,
                        ModelCard.version == v,
                    )
                )
                is not None
            )

    def get_model_card(self, card_id: int) -> ModelCard:
        with self.session() as sess:
            row = sess.get(ModelCard, card_id)
            if row is None:
                raise ModelCardError(f"model card {card_id} does not exist")
            return row

    def latest_model_card(
        self, kind: DeviceKind | str, scope: CardScope | str, scope_id: str
    ) -> ModelCard:
        """The highest version for (kind, scope, scope_id); none stored raises ModelCardError."""
        cards = self.list_model_cards(kind=kind, scope=scope, scope_id=scope_id)
        if not cards:
            raise ModelCardError(
                f"no model card for {DeviceKind(kind).value} on {CardScope(scope).value} "
                f"{scope_id!r}; run calibration first"
            )
        return cards[-1]

    def list_model_cards(
        self,
        *,
        kind: DeviceKind | str | None = None,
        scope: CardScope | str | None = None,
        scope_id: str | None = None,
    ) -> list[ModelCard]:
        """Cards ordered by (kind, scope, scope_id, version), optionally filtered."""
        stmt = select(ModelCard).order_by(
            ModelCard.device_kind, ModelCard.scope, ModelCard.scope_id, ModelCard.version
        )
        if kind is not None:
            stmt = stmt.where(ModelCard.device_kind == _card_enum(DeviceKind, kind, "kind"))
        if scope is not None:
            stmt = stmt.where(ModelCard.scope == _card_enum(CardScope, scope, "scope"))
        if scope_id is not None:
            stmt = stmt.where(ModelCard.scope_id == scope_id)
        with self.session() as sess:
            return list(sess.scalars(stmt))


def _card_enum(cls: Any, value: Any, field: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ModelCardError(f"model card {field}: {value!r} is not one of {allowed}") from None


def _fit_row(fit: Mapping[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """The fit table's row and the sorted measurement ids of one fit given as ``add_fit``'s
    keyword arguments (non-finite parameters and uncertainties stored as null)."""
    row = {
        "device_id": fit["device_id"],
        "model_name": fit["model_name"],
        "model_version": fit["model_version"],
        "parameters": {k: finite_or_none(v) for k, v in fit["parameters"].items()},
        "uncertainties": {k: finite_or_none(v) for k, v in fit["uncertainties"].items()},
        "goodness": dict(fit["goodness"]),
        "flags": [str(f) for f in fit["flags"]],
        "created_at": utcnow(),
    }
    return row, sorted({int(m) for m in fit["measurement_ids"]})


def _insert_fit(conn: Any, row: Mapping[str, Any], measurement_ids: Sequence[int]) -> int:
    fid = inserted_id(conn.execute(insert(Fit.__table__), dict(row)))
    if measurement_ids:
        conn.execute(
            insert(FitMeasurement.__table__),
            [{"fit_id": fid, "measurement_id": m} for m in measurement_ids],
        )
    return fid
