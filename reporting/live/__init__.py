"""The live view of a wafer run (``bruno-lab watch``): a page on 127.0.0.1 served by uvicorn
that follows a run through the database it writes to, so it works for a run on another station
writing to the same PostgreSQL. ``state`` reads the database; ``app`` serves the page and the
server-sent events; ``server`` runs uvicorn."""
