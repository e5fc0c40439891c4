"""What a device engineer reads: the wafer report (one self-contained HTML file) and the live
view of a running wafer (``reporting.live``).

``reporting`` sits above ``calibration`` and ``protocols`` (it reads their records and calls
``bruno_lab.devices`` for model curves) and below the CLI. Plots are plotly figures written as
plain JSON documents; the page embeds plotly's own JavaScript from the installed package, so
nothing is fetched when a report is opened.
"""
