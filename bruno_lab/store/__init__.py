"""The measurement database: SQLAlchemy 2 models, array storage, migrations, queries."""
