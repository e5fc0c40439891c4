"""``train --card rram`` / ``--card felif`` name the newest card of a kind, so a tour or script
does not depend on the ids a database happened to give its cards."""

from __future__ import annotations

import pytest
from train_cards import felif_card, rram_card_dict

from bruno_lab.cards import parse_card
from bruno_lab.commands.train import _load_cards
from bruno_lab.errors import BadInputError
from bruno_lab.store import open_store


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    store = open_store(url, require_head=False)
    store.upgrade()
    try:
        store.add_model_card(felif_card({"ps_c_m2": 0.2}, {}), [], "t")  # id 1
        store.add_model_card(parse_card(rram_card_dict(n_levels=4)), [], "t")  # id 2, v1
        store.add_model_card(parse_card(rram_card_dict(n_levels=6)), [], "t")  # id 3, v2
    finally:
        store.close()
    return url


def test_a_kind_names_its_newest_card(db: str) -> None:
    cards = _load_cards(["rram", "felif"], db)
    assert len(cards["rram"].rram.levels) == 6  # version 2, not version 1
    assert cards["felif"].device_kind == "felif"
    assert len(_load_cards(["rram:W-test"], db)["rram"].rram.levels) == 6
    assert len(_load_cards(["2"], db)["rram"].rram.levels) == 4  # an id still works


def test_cards_of_several_wafers_need_the_wafer_named(db: str) -> None:
    store = open_store(db)
    try:
        other = rram_card_dict(n_levels=4)
        other["scope_id"] = "W-other"
        store.add_model_card(parse_card(other), [], "t")
    finally:
        store.close()
    with pytest.raises(BadInputError, match="W-other, W-test; say which: --card rram:W-other"):
        _load_cards(["rram"], db)
    assert len(_load_cards(["rram:W-other"], db)["rram"].rram.levels) == 4
    with pytest.raises(BadInputError, match="no felif card for 'W-other'"):
        _load_cards(["felif:W-other"], db)
    with pytest.raises(BadInputError, match="give rram or felif"):
        _load_cards(["fecap"], db)
