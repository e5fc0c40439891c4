"""The CLI's help is complete and consistent: every option and argument says what it is, usage
lines name arguments in capitals (PLAN, not {plan}), enumerated choices are choices (listed in
--help, refused with exit 2 otherwise), and the options every command shares (--json, --db,
--station, --threads) are one definition with one help text."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any, get_args

import pytest
import typer

from bruno_lab.cli import app

SHARED = ("--json", "--db", "--station", "--threads")
CHOICES = {  # option -> commands where it must be an enumerated choice
    "--task": {"train"},
    "--neuron": {"train"},
    "--method": {"train"},
    "--synapse": {"train"},
    "--kind": {"fit"},
    "--purpose": {"report"},
}


def _commands() -> Iterator[tuple[str, Any]]:
    root = typer.main.get_command(app)

    def walk(cmd: Any, path: str) -> Iterator[tuple[str, Any]]:
        sub = getattr(cmd, "commands", None)
        if sub:
            for name, child in sub.items():
                yield from walk(child, f"{path} {name}".strip())
        else:
            yield path, cmd

    yield from walk(root, "")


COMMANDS = dict(_commands())


def _ctx(cmd: Any, path: str) -> Any:
    return cmd.make_context(f"bruno-lab {path}", [], resilient_parsing=True)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_parameter_has_help_and_usage_uses_capitals(path: str) -> None:
    cmd = COMMANDS[path]
    missing = [
        p.opts[0]
        for p in cmd.params
        if p.opts[0] != "--help" and not (getattr(p, "help", None) or "").strip()
    ]
    assert not missing, f"bruno-lab {path}: options without help: {missing}"
    usage = " ".join(cmd.collect_usage_pieces(_ctx(cmd, path)))
    assert "{" not in usage and "}" not in usage, f"bruno-lab {path}: usage {usage!r}"
    for p in cmd.params:
        if p.param_type_name == "argument":
            assert p.display_name_raw.isupper(), (path, p.name)


def _choices(param: Any) -> tuple[str, ...] | None:
    """The values an option's annotation enumerates (Literal, or list/Optional of one)."""
    annotation = param.type_descriptor.annotation
    for _ in range(3):
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return tuple(str(m.value) for m in annotation)
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        annotation = args[0]
    return None


def test_enumerated_options_are_choices() -> None:
    for option, paths in CHOICES.items():
        for path in paths:
            params = {p.opts[0]: p for p in COMMANDS[path].params}
            assert option in params, (path, option)
            assert _choices(params[option]), (path, option)


def test_the_choices_are_the_librarys_own() -> None:
    """options.py spells the choices out (--help imports nothing heavy); they must be exactly
    what the library accepts."""
    from bruno_lab.commands import options
    from bruno_lab.devices.scenarios import KINDS as MODEL_KINDS
    from bruno_lab.loop.stages import DEPLOY_TARGETS
    from bruno_lab.store.models import DeviceKind, RunPurpose
    from bruno_lab.train import felif_layer, network, synapse, tasks
    from calibration.data import KINDS

    pairs = {
        options.TaskName: tasks.TASKS,
        options.NeuronName: network.NEURONS,
        options.MethodName: felif_layer.METHODS,
        options.SynapseName: synapse.SYNAPSE_MODES,
        options.CoarseGradientName: felif_layer.COARSE_GRADIENTS,
        options.CoarseClipName: felif_layer.COARSE_CLIPS,
        options.DeviceKindName: KINDS,
        options.ModelName: MODEL_KINDS,
        options.PurposeName: tuple(p.value for p in RunPurpose),
        options.DeployTargetName: DEPLOY_TARGETS,
    }
    for choice, values in pairs.items():
        assert {m.value for m in choice} == set(values), (choice, values)
    assert {m.value for m in options.DeviceKindName} == {k.value for k in DeviceKind}


def test_shared_options_have_one_definition() -> None:
    seen: dict[str, set[str]] = {name: set() for name in SHARED}
    for cmd in COMMANDS.values():
        for p in cmd.params:
            if p.opts[0] in seen:
                seen[p.opts[0]].add(p.help or "")
    for name, helps in seen.items():
        assert len(helps) <= 1, f"{name} is declared with different help texts: {helps}"


def test_a_wrong_choice_exits_2_and_lists_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from bruno_lab.cli import main

    argv = sys.argv
    sys.argv = ["bruno-lab", "train", "--neuron", "izhikevich"]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = argv
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "izhikevich" in err and "felif" in err and "lif" in err
