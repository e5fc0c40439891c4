"""One module per report section; each returns a ``Section`` or None when its data are absent."""
