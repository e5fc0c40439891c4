"""run purpose and lease

Every run says why it was made (characterization, deployment, evaluation, maintenance), so that
calibration and reports can read characterization runs only; and a run carries the lease of the
one process allowed to write into it (holder and heartbeat).

Existing runs: a run whose stored plan document carries a ``deployment`` section (what
``protocols.deployment`` writes) becomes ``deployment``; every other run ``characterization``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 18:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PURPOSE = sa.Enum(
    "characterization", "deployment", "evaluation", "maintenance",
    name="runpurpose", native_enum=False, create_constraint=False, length=32,
)


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("purpose", _PURPOSE, nullable=True))
        batch.add_column(sa.Column("lease_holder", sa.String(length=255), nullable=True))
        batch.add_column(
            sa.Column("lease_heartbeat_at", sa.DateTime(timezone=True), nullable=True)
        )
    run = sa.table("run", sa.column("id", sa.Integer), sa.column("plan", sa.JSON),
                   sa.column("purpose", sa.String))
    conn = op.get_bind()
    deployment_ids = [
        row.id for row in conn.execute(sa.select(run.c.id, run.c.plan))
        if isinstance((row.plan or {}).get("document"), dict)
        and "deployment" in row.plan["document"]
    ]
    conn.execute(sa.update(run).values(purpose="characterization"))
    if deployment_ids:
        conn.execute(
            sa.update(run).where(run.c.id.in_(deployment_ids)).values(purpose="deployment")
        )
    with op.batch_alter_table("run") as batch:
        batch.alter_column("purpose", existing_type=_PURPOSE, nullable=False)
        batch.create_index(op.f("ix_run_purpose"), ["purpose"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.drop_index(op.f("ix_run_purpose"))
        batch.drop_column("lease_heartbeat_at")
        batch.drop_column("lease_holder")
        batch.drop_column("purpose")
