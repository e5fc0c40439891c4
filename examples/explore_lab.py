# %% [markdown]
# # A lab database from a notebook
#
# What a wafer's database holds, read with `bruno_lab.loop` and pandas: wafers, runs by
# purpose, measurements as a tidy frame, one measurement's raw arrays, the newest model cards,
# and how a deployment's cells stay apart from the characterization.
#
# Cells are `# %%` blocks: VS Code and PyCharm run them as a notebook, Jupytext opens the file
# as one, and `python examples/explore_lab.py` runs it whole. The database is `$BRUNO_LAB_DB`
# (as for `bruno-lab --db`): after `bruno-lab demo --out demo-out`,
#
#     BRUNO_LAB_DB=demo-out/lab.db python examples/explore_lab.py
#
# docs/python.md makes such a database from Python; its test runs this file on it.

# %%
import pandas as pd

from bruno_lab import loop

pd.set_option("display.width", 120)
store = loop.open_store()  # $BRUNO_LAB_DB, else the default database (see `bruno-lab db`)

# %% [markdown]
# ## Wafers and runs
# Every run has a purpose; calibration and the report read `characterization` runs unless
# told otherwise.

# %%
wafers = store.list_wafers()
for w in wafers:
    print(f"{w.name}: {w.n_dies} dies, {w.n_devices} devices, {w.n_measurements} measurements")
wafer = wafers[0].name
runs = pd.DataFrame(
    [(r.run_id, r.purpose, r.status, r.n_measurements) for r in store.list_runs(wafer=wafer)],
    columns=["run", "purpose", "status", "measurements"],
)
print(runs.to_string(index=False))

# %% [markdown]
# ## Measurements, tidy
# One row per (measurement, scalar): group, pivot and plot with plain pandas.

# %%
long = loop.measurements_long(store, wafer, purpose="characterization")
table = long.groupby(["protocol", "quantity"])["value"].agg(["count", "mean", "std"])
print(table.to_string(float_format=lambda v: f"{v:.4g}"))

# %% [markdown]
# ## One measurement's arrays
# Stored with their units; `load_array` gives a numpy array and its unit.

# %%
pv = loop.measurements_frame(store, wafer, protocol="pv_loop", purpose="characterization")
if not pv.empty:
    first = int(pv["measurement_id"].iloc[0])
    arrays = store.array_names(first)
    print("measurement", first, "arrays:", ", ".join(f"{n} [{u}]" for n, u in arrays.items()))
    name = next(iter(arrays))
    values, unit = store.load_array(first, name)
    print(f"{name}: {values.size} points, {values.min():.3g} .. {values.max():.3g} {unit}")

# %% [markdown]
# ## The newest model cards
# What `loop.build_network(config, cards)` takes.

# %%
cards = loop.latest_cards(store, wafer, kinds=("fecap", "felif", "rram"))
for kind, card in cards.items():
    print(f"{kind}: {card.n_devices} devices")
if "rram" in cards and cards["rram"].rram is not None:
    levels = [round(level.mean_siemens * 1e6) for level in cards["rram"].rram.levels]
    print("RRAM levels", levels, "uS")

# %% [markdown]
# ## Characterization and deployment apart
# A deployment programs cells too; its runs have their own purpose, so they never enter the
# fits. Every run's measurements, by purpose:

# %%
every = loop.measurements_frame(store, wafer)
print(every.groupby(["purpose", "protocol"]).size().to_string())

# %%
store.close()
