"""How a reason names an entity extra: the party, without the id's suffix, unless the name is
of a kind of number (a tax number is not a tax; probe 35)."""

from __future__ import annotations

import pytest

from features.pipeline.prepare import entity_of


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        ("declarant_id", "this declarant"),
        ("shipper_code", "this shipper"),
        ("agent", "this agent"),
        ("consignee_tax_no", "this consignee tax number"),
        ("importer_eori_number", "this importer eori number"),
        ("broker_vat_id", "this broker vat id"),
        ("tax_no", "this tax number"),
    ],
)
def test_an_extra_is_named_as_its_party_or_its_number(extra: str, phrase: str) -> None:
    assert entity_of(extra).phrase == phrase


def test_the_feature_names_keep_the_extras_own_name() -> None:
    assert entity_of("consignee_tax_no").prefix == "consignee_tax_no"
