"""`mapping draft` and a private person's columns: read as theirs by the name or by the values,
drafted ``personal: true`` and commented out (probe 18, H1 and M5).

A French export's NOM (the consignee's name), PORTABLE (their mobile, ``+32 470 998877``), RUE
and CODE_POSTAL were drafted as plain entity extras: their raw values reached the decision
store and the MLflow artifacts, keyed by the raw phone. The consignee's name, phone and e-mail,
when recognised, were active model inputs. A false negative leaves a person's phone raw in
every store; a false positive costs an opt-in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from features.intake.draft import Draft, draft_mapping
from features.intake.mapping import apply_mapping, parse_mapping_text

N = 300
# 80 people over 300 rows: names repeat as their people's parcels do
PEOPLE = np.random.default_rng(1).integers(0, 80, N)
CODES = [f"K{p}" for p in PEOPLE]  # values saying nothing: only the name can tell
FIRST = ["Anna", "Marie", "Jan", "Ana", "Luca", "Sofia", "Pierre", "Eva", "Tomas", "Ines"]
LAST = ["Janssens", "Schmidt", "Dupont", "de Souza", "Rossi", "Novak", "Garcia", "Peeters",
        "Muller", "Kowalski"]  # fmt: skip


def _export(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    at = pd.Timestamp("2026-09-01") + pd.to_timedelta(rng.integers(0, 30 * 86400, N), unit="s")
    return pd.DataFrame(
        {
            "Declaration": [f"D{i:06d}" for i in range(N)],
            "Date": at.strftime("%Y-%m-%d %H:%M:%S"),
            "Office": rng.choice(["WAW1", "KTW2"], N),
            "Seller": [f"S{v}" for v in rng.integers(0, 90, N)],
            "Consignee": [f"C{p}" for p in PEOPLE],
            "Region": rng.choice(["BE1", "BE2", "FR1"], N),
            "Origin": rng.choice(["CN", "US", "TR"], N),
            "HS": rng.choice(["61091000", "85176200", "95030000"], N),
            "Description": rng.choice(["phone case", "t-shirt", "toy"], N),
            "Weight": (rng.random(N) * 3 + 0.1).round(2).astype(str),
            "Value": (rng.random(N) * 200 + 1).round(2).astype(str),
            "Currency": "EUR",
            "Mode": "postal",
        }
    )


def _drafted(column: str, values: list[str]) -> Draft:
    export = _export()
    export[column] = values
    return draft_mapping(export)


def _commented_extra(draft: Draft, column: str) -> tuple[dict, str]:
    """The entry of a commented-out extra, and its note."""
    line = next(x for x in draft.text.splitlines() if x.startswith(f"  # - {{column: {column},"))
    entry, note = line.removeprefix("  # - ").split("  # ", 1)
    return yaml.safe_load(entry), note


@pytest.mark.parametrize(
    "column",
    [
        # a phone, without a party word (PORTABLE was a plain entity, probe 18)
        "PORTABLE", "GSM", "Fax", "Tel", "Cell", "Telefono", "Mobile", "Contact",
        # an e-mail
        "E-mail", "Courriel",
        # a street or an address
        "RUE", "Street", "Strasse", "Calle", "Rua", "Via", "Indirizzo", "Direccion", "Endereco",
        # a postcode
        "CODE_POSTAL", "Zip code", "PLZ", "CEP",
        # first and last names, a birth date, a national id
        "Prenom", "Vorname", "Nachname", "Surname", "FirstName", "LastName", "Apellido",
        "Sobrenome", "Cognome", "Date of birth", "Date de naissance", "Passport", "CPF",
        # a name alone (NOM was the consignee's), and a seller's: may be a person's
        "NOM", "Nome", "Nombre", "Name", "Seller name",
    ],
)  # fmt: skip
def test_a_column_named_for_a_persons_particular_is_personal(column: str) -> None:
    draft = _drafted(column, CODES)
    assert column in draft.personal
    assert _commented_extra(draft, column)[0]["personal"] is True


@pytest.mark.parametrize(("column", "fold"), [("Prenom", True), ("NOM", True), ("RUE", False)])
def test_a_persons_name_is_folded_their_other_particulars_are_not(column: str, fold: bool) -> None:
    # one person whatever the case of their name: one pseudonym
    entry, _ = _commented_extra(_drafted(column, CODES), column)
    assert entry.get("fold", False) is fold


@pytest.mark.parametrize(
    "column",
    ["Product name", "Nom produit", "Nome merce", "Brand name", "Nom bureau", "Office address",
     "Ship via", "Mail class"],
)  # fmt: skip
def test_a_name_saying_a_thing_or_an_office_is_no_persons(column: str) -> None:
    draft = _drafted(column, CODES)
    assert column not in draft.personal
    assert column in draft.extras  # drafted as an ordinary extra, read


@pytest.mark.parametrize(
    ("values", "what"),
    [
        ([f"+32 47{p % 10} {100000 + p * 7919 % 900000}" for p in PEOPLE], "phone"),
        ([f"0470/{p % 90 + 10}.{p % 80 + 10}.{p % 70 + 10}" for p in PEOPLE], "phone"),
        ([f"(555) {100 + p}-{4000 + p}" for p in PEOPLE], "phone"),
        ([f"+336{12345678 + p}" for p in PEOPLE], "phone"),
        ([f"06 {p % 90 + 10} {p % 80 + 10} {p % 70 + 10} {p % 60 + 10}" for p in PEOPLE], "phone"),
        ([f"{p} Rue des Lilas" for p in PEOPLE], "street address"),
        ([f"Zebrastraat {p}" for p in PEOPLE], "street address"),
        ([f"ul. Polna {p}" for p in PEOPLE], "street address"),
        ([f"{p} Main St" for p in PEOPLE], "street address"),
        ([f"{FIRST[p % 10]} {LAST[p // 8 % 10]}" for p in PEOPLE], "name"),
        ([f"{LAST[p // 8 % 10].upper()} {FIRST[p % 10]}" for p in PEOPLE], "name"),
        ([f"{LAST[p // 8 % 10]}, {FIRST[p % 10]}" for p in PEOPLE], "name"),
        ([f"buyer{p}@mail.example" for p in PEOPLE], "e-mail address"),
    ],
)
def test_a_persons_values_make_a_column_personal_whatever_its_name(
    values: list[str], what: str
) -> None:
    draft = _drafted("ATTR_7", values)
    assert draft.personal == ["ATTR_7"]
    entry, note = _commented_extra(draft, "ATTR_7")
    assert f"a private person's {what}, by its values" in note
    assert entry.get("fold", False) is (what == "name")  # one person whatever the case


@pytest.mark.parametrize(
    "values",
    [
        [["6403990000", "9503000000", "8517620000", "6109100000"][p % 4] for p in PEOPLE],
        [f"{9500 + p % 9}.{p % 90 + 10}" for p in PEOPLE],  # 9503.00
        [f"{6400 + p % 90} {p % 90 + 10} 00 00" for p in PEOPLE],  # a tariff code in groups
        [f"0{p % 9}{p % 7}{p % 5}/2026/{p:06d}" for p in PEOPLE],  # a reference of a year
        [f"RR{100000000 + p * 7:09d}CN" for p in PEOPLE],  # an S10 barcode
        [f"1 {p:03d},50" for p in PEOPLE],  # amounts
        [f"{1000 + p * 13}.{p % 90 + 10}" for p in PEOPLE],
        [f"{p % 28 + 1:02d}/0{p % 9 + 1}/2026" for p in PEOPLE],  # dates
        [["Phone Case", "Cotton Shirt", "Toy Car"][p % 3] for p in PEOPLE],  # goods, capitalised
        [["Paris", "Lyon", "New York", "Sao Paulo", "Gent"][p % 5] for p in PEOPLE],  # cities
        [f"SHOP {p}" for p in PEOPLE],
    ],
)
def test_codes_ids_dates_amounts_and_goods_are_no_persons(values: list[str]) -> None:
    assert "ATTR_7" not in _drafted("ATTR_7", values).personal


def test_goods_titles_shaped_like_names_are_no_persons() -> None:
    # a marketplace's titles are capitalised words too: the name says they are the goods
    titles = [f"{FIRST[p % 10]} {LAST[p // 8 % 10]}" for p in PEOPLE]
    assert "Product title" not in _drafted("Product title", titles).personal


def test_a_persons_column_is_drafted_commented_out_saying_why_and_how_to_opt_in() -> None:
    """Data minimisation (M5): the consignee is already one pseudonymised input; their phone
    is read only if someone opts in, and the draft says so where the line is."""
    draft = _drafted("PORTABLE", [f"+32 470 {100000 + p}" for p in PEOPLE])
    entry, note = _commented_extra(draft, "PORTABLE")
    assert entry == {"column": "PORTABLE", "name": "portable", "kind": "entity", "personal": True}
    assert note.startswith("CHECK: PERSONAL (a private person's phone): not mapped, so it is")
    assert "uncomment to build its history as a feature, held as a keyed pseudonym" in note
    # not read, so not an extra: listed as not mapped, in the summary and in the draft
    assert "PORTABLE" not in draft.extras and "PORTABLE" not in draft.mapped.values()
    said = "PORTABLE (a private person's phone: commented out under extras)"
    assert said in draft.ignored and said in draft.text


def test_a_draft_whose_only_extras_are_a_persons_still_reads() -> None:
    # a key with only comments below it is YAML's null, which the mapping refuses: the key is
    # commented out with them
    draft = _drafted("PORTABLE", [f"+32 470 {100000 + p}" for p in PEOPLE])
    assert draft.extras == [] and draft.personal == ["PORTABLE"]
    assert "\n# extras:" in draft.text
    mapping = parse_mapping_text(draft.text)
    assert mapping.extras == []
    mapped, _ = apply_mapping(_export().assign(PORTABLE="x"), mapping)
    assert "portable" not in mapped


def test_opting_in_reads_a_persons_columns_as_pseudonyms_only() -> None:
    export = _export()
    export["PORTABLE"] = [f"+32 47{p % 10} {100000 + p}" for p in PEOPLE]
    export["NOM"] = [f"{FIRST[p % 10]} {LAST[p // 8 % 10]}" for p in PEOPLE]
    draft = draft_mapping(export)
    opted_in = draft.text.replace("\n# extras:", "\nextras:").replace("\n  # - ", "\n  - ")
    mapped, _ = apply_mapping(export, parse_mapping_text(opted_in))
    for name in ("portable", "nom"):
        assert mapped[name].str.fullmatch(r"psn_[0-9a-f]{24}").all()
    # the name is folded: one person, one pseudonym, whatever its case
    export["NOM"] = export["NOM"].str.upper()
    upper, _ = apply_mapping(export, parse_mapping_text(opted_in))
    assert upper["nom"].equals(mapped["nom"])


@pytest.mark.parametrize("order", ["name first", "id first"])
def test_a_recipient_s_id_is_the_consignee_over_the_name_beside_it(order) -> None:
    """RECIPIENT_NAME before RECIPIENT_ID: both name the recipient and fit by their values, and
    the first in the file was taken, the name folded as the id and the id left a personal
    extra. The id is the consignee in either order; the name is the person's, commented out."""
    export = _export().drop(columns="Consignee")
    names = [f"{FIRST[p % 10]} {LAST[p // 10 % 10]}" for p in PEOPLE]
    pair = {"RECIPIENT_NAME": names, "RECIPIENT_ID": CODES}
    for column in pair if order == "name first" else reversed(list(pair)):
        export[column] = pair[column]
    draft = draft_mapping(export)
    mapped = yaml.safe_load(draft.text)["columns"]
    assert mapped["consignee_id"] == "RECIPIENT_ID"
    entry, note = _commented_extra(draft, "RECIPIENT_NAME")
    assert entry["personal"] is True and "PERSONAL" in note
