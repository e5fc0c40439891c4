"""Files that cannot carry code: crafted networks and checkpoints never run their payload; the
safetensors formats round-trip, and a corrupt, edited, foreign or future file is refused (exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bruno_lab.errors import BadInputError, DataError
from bruno_lab.safeio import FileFormatError, check_output_path, parse_json, read_text

REPO = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling it creates the directory ``marker``: proof that a loader ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.marker,))


def _tiny_network():  # type: ignore[no-untyped-def]
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork

    torch.manual_seed(0)
    cfg = NetworkConfig(kind="classify", n_in=2, n_hidden=3, n_out=2, neuron="lif", seed=0)
    return SpikingNetwork(cfg)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_DATA_HOME": str(cwd / "xdg")}
    return subprocess.run(
        [sys.executable, "-m", "bruno_lab.cli_entry", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip


def test_crafted_network_file_does_not_run_its_payload(tmp_path: Path) -> None:
    from bruno_lab.train.io import load_network, read_network_meta
    from protocols.deployment_eval import task_for_network

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "bruno-lab-network", "version": 1, "x": Payload(marker)}, evil)
    for load in (load_network, read_network_meta, task_for_network):
        with pytest.raises(FileFormatError, match=r"old-format .*can run code"):
            load(evil)
    assert not marker.exists()


def test_crafted_files_through_the_cli_exit_2_and_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"format": "bruno-lab-network", "x": Payload(marker)}, tmp_path / "evil.pt")
    torch.save({"state_dict": Payload(marker)}, tmp_path / "ck.pt")
    ev = _cli("evaluate", "--network", "evil.pt", cwd=tmp_path)
    assert ev.returncode == 2, ev.stderr
    assert "can run code" in ev.stderr and "Traceback" not in ev.stderr
    tr = _cli("train", "--task", "patterns", "--epochs", "1", "--hidden", "2", "--n-micro", "5",
              "--checkpoint", "ck.pt", "--resume", cwd=tmp_path)  # fmt: skip
    assert tr.returncode == 2, tr.stderr
    assert "checkpoint" in tr.stderr and "Traceback" not in tr.stderr
    assert not marker.exists()


def test_network_round_trip_and_metadata(tmp_path: Path) -> None:
    from bruno_lab.train.io import load_network, read_network_meta, save_network

    net = _tiny_network()
    path = tmp_path / "net.pt"
    save_network(path, net, {"task": "patterns", "nan": float("nan")})
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle or zip
    back = load_network(path)
    for (k, a), (k2, b) in zip(net.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    meta = read_network_meta(path)
    assert meta["metrics"]["task"] == "patterns" and meta["config"]["n_hidden"] == 3
    assert not path.with_name("net.pt.tmp").exists()


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_edited_truncated_foreign_and_future_files_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from bruno_lab.safeio import write_tensor_file
    from bruno_lab.train.io import FORMAT, load_network, save_network

    net = _tiny_network()
    good = tmp_path / "net.pt"
    save_network(good, net)
    edited = tmp_path / "edited.pt"
    edited.write_bytes(good.read_bytes())
    _flip_last_byte(edited)
    with pytest.raises(FileFormatError, match="checksum"):
        load_network(edited)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(FileFormatError):
        load_network(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(FileFormatError, match="not a bruno-lab network"):
        load_network(foreign)
    future = tmp_path / "future.pt"
    write_tensor_file(future, FORMAT, 99, {"state/x": torch.zeros(1)}, {})
    with pytest.raises(FileFormatError, match="version 99"):
        load_network(future)
    for junk in (b"", b"\x00" * 3, b"PK\x05\x06" + b"\x00" * 18, os.urandom(4096)):
        (tmp_path / "junk.pt").write_bytes(junk)
        with pytest.raises(FileFormatError):
            load_network(tmp_path / "junk.pt")
    with pytest.raises(FileFormatError, match="directory"):
        load_network(tmp_path)
    # a valid file whose weights do not fit the config it names
    other = tmp_path / "other.pt"
    write_tensor_file(other, FORMAT, 2, {"state/bogus": torch.zeros(1000)},
                      {"config": net.config.to_json(), "cards": {}, "metrics": {}})  # fmt: skip
    with pytest.raises(DataError, match="do not fit"):
        load_network(other)


def test_checkpoint_round_trip_resumes_optimizer_and_generators(tmp_path: Path) -> None:
    from bruno_lab.train.io import apply_checkpoint, load_checkpoint, save_checkpoint

    net = _tiny_network()
    opt = torch.optim.Adamax(net.parameters(), lr=1e-2, betas=(0.9, 0.995))
    loss = sum(p.sum() for p in net.parameters())
    loss.backward()
    opt.step()
    gens = [torch.Generator().manual_seed(5).get_state()]
    path = tmp_path / "ck.pt"
    save_checkpoint(path, net, opt, gens, [{"epoch": 1}], {"epochs": 3})
    ck = load_checkpoint(path)
    assert torch.equal(ck.generator_states[0], gens[0]) and ck.history == [{"epoch": 1}]
    net2 = _tiny_network()
    opt2 = torch.optim.Adamax(net2.parameters(), lr=1e-2, betas=(0.9, 0.995))
    apply_checkpoint(ck, net2, opt2, str(path))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for pid in s1["state"]:
        for key, value in s1["state"][pid].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(s2["state"][pid][key]))
    from bruno_lab.train.network import NetworkConfig, SpikingNetwork

    wider = SpikingNetwork(
        NetworkConfig(kind="classify", n_in=2, n_hidden=4, n_out=2, neuron="lif", seed=0)
    )
    with pytest.raises(BadInputError, match=r"another network .*n_hidden"):
        apply_checkpoint(ck, wider, torch.optim.Adamax(wider.parameters()), str(path))


def test_programming_map_checksum(tmp_path: Path) -> None:
    from bruno_lab.safeio import read_json_doc, write_json_doc

    doc = {"format": "bruno-lab-programming-map", "version": 2, "cells": [{"cell": 0}]}
    path = tmp_path / "map.json"
    written = write_json_doc(path, doc)
    assert len(written["sha256"]) == 64
    assert read_json_doc(path, "bruno-lab-programming-map", (2,), "map")["cells"] == [{"cell": 0}]
    edited = json.loads(path.read_text())
    edited["cells"][0]["cell"] = 1
    path.write_text(json.dumps(edited))
    with pytest.raises(FileFormatError, match="checksum"):
        read_json_doc(path, "bruno-lab-programming-map", (2,), "map")


def test_strict_json_and_text_readers(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="duplicate key 'a'"):
        parse_json('{"a": 1, "a": 2}', "x.json")
    with pytest.raises(BadInputError, match="NaN is not allowed"):
        parse_json('{"a": NaN}', "x.json")
    with pytest.raises(BadInputError, match="deeper than"):
        parse_json("[" * 100_000 + "]" * 100_000, "x.json")
    assert parse_json('{"s": "[[[[[["}', "x.json", max_depth=2) == {"s": "[[[[[["}
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(BadInputError, match=r"latin.yaml:1: plan is not UTF-8"):
        read_text(tmp_path / "latin.yaml", "plan", max_bytes=1000)
    (tmp_path / "u16.yaml").write_bytes("name: a".encode("utf-16"))
    with pytest.raises(BadInputError, match="UTF-16"):
        read_text(tmp_path / "u16.yaml", "plan", max_bytes=1000)
    (tmp_path / "big.yaml").write_bytes(b"a" * 2000)
    with pytest.raises(BadInputError, match="at most 1000 bytes"):
        read_text(tmp_path / "big.yaml", "plan", max_bytes=1000)


def test_output_paths_checked_before_work(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(BadInputError, match="is a directory"):
        check_output_path(tmp_path / "d", "--out")
    with pytest.raises(BadInputError, match="is not a directory"):
        check_output_path(tmp_path / "f" / "net.pt", "--out")
    with pytest.raises(BadInputError, match=r"\.json, \.yaml"):
        check_output_path(tmp_path / "card.txt", "--out", suffixes=(".json", ".yaml"))
    assert check_output_path(tmp_path / "new" / "net.pt", "--out") == tmp_path / "new" / "net.pt"


def test_crafted_braille_pickle_does_not_run_its_payload(tmp_path: Path) -> None:
    import pickle

    import numpy as np

    from bruno_lab.train.data.braille import load_braille

    marker = tmp_path / "pwned"
    evil = tmp_path / "braille.pkl"
    evil.write_bytes(pickle.dumps([{"taxel_data": Payload(marker), "letter": "A"}]))
    with pytest.raises(FileFormatError, match=r"posix\.mkdir|os\.mkdir"):
        load_braille(evil)
    assert not marker.exists()
    # the published layout (numpy arrays in dicts in a list) still loads
    good = tmp_path / "good.pkl"
    rng = np.random.default_rng(0)
    recs = [{"taxel_data": rng.integers(0, 255, (20, 12), dtype=np.uint8), "letter": c}
            for c in "AB" * 5]  # fmt: skip
    good.write_bytes(pickle.dumps(recs))
    assert load_braille(good).n_train == 8


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"n_in": 10**6, "n_hidden": 10**4}, "needs 10000020000 weights"),
        ({"n_hidden": 10**8}, "needs 400000000 weights"),
        ({"encoder_tiles": 10**9}, "needs 6000000006 weights"),
        ({"n_micro": 10**12}, "n_micro is at most"),
        ({"n_hidden": True}, "n_hidden = True is not a 64-bit integer"),
        ({"seed": 2**70}, "seed = .* is not a 64-bit integer"),
    ],
)
def test_a_crafted_header_cannot_make_the_loader_allocate(
    tmp_path: Path, edit: dict[str, object], message: str
) -> None:
    """A checksummed header anyone can write: sizes beyond the stored weights are refused
    before the network is built (10^10 weights used to be allocated first)."""
    import time

    from bruno_lab.safeio import write_tensor_file
    from bruno_lab.train.io import FORMAT, VERSION, load_network

    net = _tiny_network()
    config = {**net.config.to_json(), **edit}
    tensors = {f"state/{k}": v for k, v in net.state_dict().items()}
    path = tmp_path / "crafted.pt"
    write_tensor_file(path, FORMAT, VERSION, tensors, {"config": config, "cards": {}})
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=message):
        load_network(path)
    assert time.perf_counter() - t0 < 5.0


def test_braille_records_of_the_wrong_shape_or_values_are_refused(tmp_path: Path) -> None:
    import pickle

    import numpy as np

    from bruno_lab.train.data.braille import load_braille

    ok = {"taxel_data": np.zeros((20, 12), dtype=np.uint8), "letter": "A"}
    cases = {
        "a string": ([{"taxel_data": "abc", "letter": "A"}], "T x 12 numbers"),
        "ragged": ([{"taxel_data": [[1, 2], [3]], "letter": "A"}], "T x 12 numbers"),
        "nan": ([{"taxel_data": np.full((5, 12), np.nan), "letter": "A"}], "NaN"),
        "no samples": ([{"taxel_data": np.zeros((0, 12)), "letter": "A"}], r"shape \(0, 12\)"),
        "one record": ([ok], "no training or no test sample"),
    }
    for name, (records, message) in cases.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(records))
        with pytest.raises(DataError, match=message):
            load_braille(path)


# -- the one YAML loader ------------------------------------------------------------------


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["libyaml", "python"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both parsers under the strict composer: libyaml's when PyYAML has it, else Python's."""
    from bruno_lab import yamlio

    if request.param == "python":
        monkeypatch.setattr(yamlio, "_LOADER", yamlio._Loader)
    elif yamlio._LOADER is yamlio._Loader:
        pytest.skip("PyYAML built without libyaml")
    return str(request.param)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\nx: 1\nname: b\n", r"f\.yaml:3: duplicate key 'name' \(first on line 1\)"),
        ("p:\n  amplitude_v: 3 V\n  amplitude_v: 1 V\n", r"f\.yaml:3: duplicate key 'amplitude_v'"),
        (_bomb(), "expands to more than 500000 values"),
        ("x: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than 64 levels"),
        ("x: " + "{a: " * 100 + "1" + "}" * 100 + "\n", "nested deeper than 64 levels"),
        ("[" * 5000 + "]" * 5000 + "\n", "f.yaml:1: "),
        ("a: 1\nb: x\x1b\n", r"f\.yaml:2: character #x001b is not allowed"),
        ("x: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("a: 1\n---\nb: 2\n", "f.yaml:2: malformed YAML"),
        ("".join(f"a{i}: &a{i} 1\nb{i}: *a{i}\n" for i in range(300)), "more than 256 aliases"),
    ],
)
def test_yaml_loader_refuses_with_file_and_line(yaml_loader: str, text: str, message: str) -> None:
    import time

    from bruno_lab.errors import PlanError
    from bruno_lab.yamlio import parse_yaml

    t0 = time.perf_counter()
    with pytest.raises(PlanError, match=message):
        parse_yaml(text, "f.yaml")
    assert time.perf_counter() - t0 < 5.0


def test_yaml_loader_reads_what_a_lab_file_holds(yaml_loader: str, tmp_path: Path) -> None:
    from bruno_lab.errors import PlanError
    from bruno_lab.yamlio import load_yaml_file, parse_yaml

    text = "name: w\nbase: &b {x: 1}\nuse: {<<: *b, y: 2}\nlist: [1, 2.5, '3 V', true, null]\n"
    assert parse_yaml(text, "f.yaml").data == {
        "name": "w", "base": {"x": 1}, "use": {"x": 1, "y": 2},
        "list": [1, 2.5, "3 V", True, None],
    }  # fmt: skip
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfname: w\n")
    assert load_yaml_file(tmp_path / "bom.yaml", "plan").data == {"name": "w"}
    for name, data, message in [
        ("latin1.yaml", b"name: caf\xe9\n", r"latin1\.yaml:1: plan is not UTF-8"),
        ("utf16.yaml", "name: w\n".encode("utf-16"), "UTF-16"),
        ("nul.yaml", b"name: a\x00\n", "NUL byte"),
    ]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PlanError, match=message):
            load_yaml_file(tmp_path / name, "plan")
    big = tmp_path / "big.yaml"
    big.write_text("name: k\nm: {" + ",".join(f"k{i}: {i}" for i in range(300_000)) + "}\n")
    with pytest.raises(PlanError, match="refused unparsed"):
        load_yaml_file(big, "plan")
