"""Measurement protocols and the wafer-run orchestrator.

One module per protocol (``pund``, ``pv_loop``, ``switching_kinetics``, ``felif_response``,
``rram_forming``, ``rram_iv``, ``rram_pulsed``, ``rram_program_verify``, ``rram_read_noise``,
``rram_retention``, ``rram_endurance``), each exposing ``SPEC`` (name, parameter class, run
function ``run(bench, device, params) -> ProtocolResult``). Around them:

- ``protocols.plan``: ``load_plan(path, wafer=None) -> Plan`` (YAML, units, file:line errors);
- ``protocols.schedule``: ``build_schedule(plan, wafer) -> list[Planned]`` (keys
  ``die/site/protocol/index``), ``summarize``;
- ``protocols.prepare``: ``prepare_run(plan_path, station_path) -> PreparedRun`` (touches no
  instrument; what ``--dry-run`` does) and ``execute_run(prepared, store, ...) -> RunSummary``;
- ``protocols.orchestrator``: ``Orchestrator`` (commit per measurement, resume, faults,
  reconnect policy, signals) with ``RunProgress`` callbacks;
- ``protocols.registry``: ``get_protocol(name)``, ``all_protocols()``.

The plan format is documented in ``docs/plans.md``; an example ships in ``protocols/examples``.
"""
