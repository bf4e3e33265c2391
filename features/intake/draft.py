"""A first column mapping for an export nobody has mapped yet (`parcelrisk mapping draft`).

An administration's export arrives with its own column names, date formats, decimal commas,
code tables and units. Writing its mapping by hand means reading every column; this module
reads them first and writes the mapping it would propose, for a person to check.

It proposes; it never decides where the data cannot say:
- a field is mapped from a column when the column's values fit the field (HS codes look like
  HS codes, countries are ISO codes, dates parse) and, where values alone cannot tell (weight
  or value, seller or consignee), its name says so in one of the languages of the synonym
  table below; weights written with their unit (250 g, 1,79 kg) say it by their values;
- every guess a person should confirm carries a ``# CHECK`` comment saying what was guessed
  from what (day-first dates, grams, a code table read from initials);
- a required field it cannot find is left as a ``# TODO`` comment, so ``ingest`` refuses the
  draft naming the field until someone maps it; local times get the administration's zone
  (``features.timezone``) with a CHECK, never a silent UTC; a code the table does not cover
  is listed, not guessed, and ``ingest`` refuses rows holding it;
- the shape of the export is drafted too: an ``items:`` block when ids repeat (one row per
  goods item), ``columns: [DATE, TIME]`` for a time of day in its own column,
  ``outcomes_only_if_inspected`` for results written on every row, ``inspected`` from a
  result column left empty for the parcels not inspected, or from a yes/no column, whatever
  its name, saying yes on exactly the rows a result is written on;
- columns left over become extras (entity, categorical or numeric by their values, entity
  when the name says a party), and free text, constant or unique columns are listed as
  ignored; a private person's particular (by its name or its values: phones, e-mails, street
  addresses, names) is drafted ``personal: true`` and commented out, read only if opted in.
  ``results=True`` drafts a results mapping (``outcomes ingest``): the id and the outcome
  fields only.
The draft is then tried on the export (``try_draft``: ``read_export`` and the gate, or the
results mapping) and the result said beside it.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from features.intake.contract import (
    FALSE_WORDS,
    FIELDS,
    FIELDS_BY_NAME,
    TRUE_WORDS,
    ascii_digit_table,
)
from features.intake.iso3166 import (
    ALPHA2,
    ALPHA3_TO_ALPHA2,
    NUMERIC_TO_ALPHA2,
    name_to_alpha2,
    plain_name,
)
from features.intake.iso4217 import COMMON_MISTAKES, ISO_4217
from features.intake.words import unspaced_class

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Rows profiled: spread over the file (an export sorted by date differs from start to end).
SAMPLE_ROWS = 20_000
# Columns a draft reads (each costs ~10 ms of profiling: 2,000 x 2,000 rows took 20 s).
MAX_COLUMNS = 2_000
# Share of a column's non-empty sample a reading must take for the column to fit a field.
FITS = 0.98

# Names a column may carry for each field, in the languages of the administrations seen so far
# (English, French, Spanish, Portuguese, German, Italian, Dutch); compared without accents or
# case, as whole names or as words of a name (``DATE_DEPOT`` holds ``date``).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "declaration_id": (
        "declaration id", "declaration number", "declaration", "decl", "num decl", "mrn", "lrn",
        "id", "ref", "reference", "numero", "number", "no", "nr", "dua", "dau", "dam",
        "anmeldung", "declaracao", "declaracion", "dichiarazione", "aangifte", "registriernummer",
        "anmeldungsnummer", "bezugsnummer", "numero dichiarazione", "numero declaracion",
        # a postal export (UPU ITMATT / CN23): the mail item, by its S10 barcode, is declared
        "mailitm fid", "mailitm", "mail item", "mail item id", "mailitem", "s10", "barcode",
        "item barcode", "tracking number", "tracking no", "parcel id", "parcel number",
    ),
    "declared_at": (
        "declared at", "declaration date", "date", "datetime", "lodged", "lodgement", "depot",
        "date depot", "fecha", "data", "datum", "registered", "registration date", "submitted",
        "annahmedatum", "anmeldedatum", "fecha aceptacion", "data registro", "data accettazione",
        "acceptance date", "date acceptation", "filed", "filing date", "entry date", "entered",
        "date filed", "lodgement date", "submission date",
    ),
    "arrival_office": (
        "office", "customs office", "bureau", "bureau douane", "oficina", "aduana", "alfandega",
        "unidade", "zollstelle", "zollamt", "dogana", "kantoor", "port", "entry point",
        "estancia", "estancia aduaneira",
        "dest office", "destination office", "office of destination", "arrival office",
        "office of exchange", "exchange office", "impc", "inward office",
    ),
    "channel": ("channel", "mode", "transport mode", "mode of transport", "canal", "modo", "modal",
                "kanal", "via", "verkehrszweig", "mode transport", "modo transporte",
                "modo de transporte", "modalita trasporto"),
    "operator_id": (
        "operator", "carrier", "transporteur", "courier", "express operator", "postal operator",
        "operador", "transportista", "transportadora", "transportador", "spediteur", "vettore",
        "vervoerder", "operadora", "corriere",
    ),
    "platform_id": ("platform", "plateforme", "plataforma", "marketplace", "plattform", "site"),
    "seller_id": (
        "seller", "vendeur", "vendedor", "consignor", "shipper", "exporter", "expediteur",
        "exportador", "remetente", "verkaufer", "absender", "versender", "venditore", "supplier",
        "merchant", "mittente", "speditore", "remitente", "expedidor",
    ),
    "seller_country": (
        "seller country", "pays vendeur", "pais vendedor", "consignor country",
        "supplier country", "country of supplier", "vendor country",
        "shipper country", "exporter country", "country of dispatch", "dispatch country",
        "country of export", "export country", "pays expedition", "pais procedencia",
        "pais de procedencia", "versendungsland",
    ),
    "consignee_id": (
        "consignee", "destinataire", "importer", "importateur", "buyer", "recipient",
        "destinatario", "importador", "empfanger", "importeur", "acquirente", "ontvanger",
        # RECEIVER_ID was offered only as a personal extra beside CONSIGNEE_ID's mapping
        # (probe 36); a postal export's addressee by an id only: ADDRESSEE_NAME and _ADDR are
        # a person's particulars, commented out (probe 18)
        "receiver", "receptor", "recebedor", "addressee id", "addressee code",
        "addressee number", "addressee no",
        # the everyday abbreviations (probe 39: RECV_ID, RCPT_ID were entity extras, the
        # split-order features without a consignee); a bare "rcpt" is a receipt too (RCPT_NO)
        "recv", "rcvr", "recip", "cnee", "rcpt id", "rcpt ref", "rcpt code", "recipient no",
        "empfaenger", "warenempfaenger", "warenempfanger",
    ),
    "consignee_region": ("region", "nuts", "province", "provincia", "state", "department",
                         "departement", "region dest", "bundesland", "estado", "uf"),
    "origin_country": (
        "origin", "origine", "origen", "origem", "ursprung", "ursprungsland", "country of origin",
        "pays origine", "pais origen", "coo", "paese origine", "pais de origem",
    ),
    "hs_code": (
        "hs", "hs code", "hscode", "sh", "code sh", "ncm", "cn", "taric", "tariff", "tarif",
        "commodity", "commodity code", "nomenclature", "tariff code", "hts", "codigo",
        "warennummer", "nc",
    ),
    "description": (
        "description", "designation", "desc", "goods", "goods description", "item",
        "commodity description", "item description", "product description", "article",
        "mercadoria", "descricao", "descripcion", "mercancia", "warenbezeichnung", "beschreibung",
        "libelle", "product", "produit", "merci", "omschrijving",
        # CN22/CN23 call the goods description "contents": a postal CONTENTS column of short
        # texts (gift, T-shirt) was drafted an entity extra, the text features off (probe 38)
        "contents", "goods contents", "content description", "contents description",
        "description of contents", "detailed description of contents", "item contents",
        "item content", "nature of contents", "parcel contents", "package contents",
        "content desc", "contents desc", "contenu", "description du contenu",
        "nature du contenu", "contenido", "descripcion del contenido", "conteudo",
        "descricao do conteudo", "inhalt", "inhaltsbeschreibung", "contenuto",
        "descrizione contenuto", "inhoud", "omschrijving inhoud",
        # the goods' text beside a CN22/CN23 category-of-item column (probe 39): ITEM_DESC and
        # Warenbeschreibung were left categorical extras
        "item desc", "goods desc", "description of goods", "warenbeschreibung",
        "artikelbeschreibung", "artikelbezeichnung",
    ),
    "quantity": (
        "quantity", "qty", "qte", "quantite", "cantidad", "quantidade", "menge", "anzahl",
        "pieces", "pcs", "items", "nb articles", "quantita", "aantal", "qtde", "qtd", "quant",
        "cant", "stuck", "stk", "colli", "volumes", "nb colis",
    ),
    "gross_weight_kg": (
        "weight", "gross weight", "net weight", "poids", "poids brut", "peso", "peso bruto",
        "gewicht", "rohmasse", "eigenmasse", "kg", "mass", "gross mass", "masse", "gewicht kg",
        "peso lordo", "poids net", "peso neto", "peso liquido",
    ),
    "declared_value": (
        "value", "declared value", "valeur", "valor", "wert", "amount", "price", "prix",
        "montant", "precio", "preco", "invoice value", "customs value", "valore", "waarde",
        "rechnungsbetrag", "betrag", "zollwert", "warenwert", "statistical value",
        "valeur en douane", "valor aduana", "valor aduaneiro", "valore doganale",
    ),
    "currency": ("currency", "devise", "moneda", "moeda", "wahrung", "ccy", "cur", "valuta",
                 "divisa", "monnaie"),
    "category": (
        "category", "nature", "type", "categoria", "kategorie", "tipo", "art",
        "transaction type", "nature transaction", "natureza",
        # CN22/CN23's "category of item" check-boxes (gift, documents, commercial sample,
        # returned goods, sale of goods, other), which some exports call "nature of contents":
        # that name says the description too, so the column's values decide (``_candidates``)
        "category of item", "item category", "category of contents", "contents category",
        "content category", "nature of contents", "type of contents", "contents type",
        "nature of item", "nature du contenu", "nature de l envoi", "categorie de l envoi",
        "categorie d envoi", "categorie de l objet", "naturaleza del contenido",
        "categoria del envio", "natureza do conteudo", "categoria do envio",
        "categoria do objeto", "art der sendung", "art des inhalts", "inhaltsart",
        "sendungskategorie", "kategorie der sendung", "natura del contenuto",
        "categoria dell invio", "categoria di invio", "aard van de inhoud",
        "categorie van de zending", "kategoria przesylki", "rodzaj zawartosci",
        "gonderi kategorisi", "icerik turu",
    ),
    "ioss_prepaid": ("ioss", "ioss prepaid", "vat prepaid", "prepaid"),
    "aeo_operator": ("aeo", "oea", "aeo operator", "trusted trader", "zwb"),
    "inspected": (
        "inspected", "inspection", "controle", "control", "controlled", "checked", "kontrolle",
        "controlado", "inspecao", "inspeccion", "examined", "verified", "physical control",
        "beschau", "beschaut", "verifica", "controllo", "kontrola", "muayene", "revision",
    ),
    "inspected_at": (
        "inspected at", "inspection date", "date controle", "control date", "fecha control",
        "data controle", "kontrolldatum", "result date", "date resultat", "exam date",
        "examination date", "date of exam", "exam", "inspection", "checked at", "checked on",
        "inspected on", "inspection time", "control time", "data kontroli", "muayene tarihi",
        "fecha revision", "fecha inspeccion", "control at", "controlled at", "controlled on",
        "date of control", "checked", "fecha del control", "fecha de control",
        "data controlo", "data do controlo", "data de controlo",  # European Portuguese
    ),
    "illicit": (
        "illicit", "result", "resultat", "resultado", "ergebnis", "fraud", "fraude", "hit",
        "positive", "finding", "offence found", "irregular", "irregularity", "seized",
        "risultato", "resultaat", "esito", "befund", "constatation", "conclusion", "outcome",
        "seizure", "seizures", "exam result", "examination result", "apreensao", "saisie",
        "incautacion", "beschlagnahme", "sequestro", "wynik", "sonuc", "wynik kontroli",
        "muayene sonucu",
    ),
    "offence_type": (
        "offence", "offense", "offence type", "infraction", "infraccion", "infracao",
        "violation", "verstoss", "fraud type", "type fraude", "irregularity type",
    ),
    "revenue_recovered": (
        "revenue", "revenue recovered", "recovered", "droits", "droits recup", "duties",
        "duty", "tax", "taxes", "tributo", "tributos", "derechos", "direitos", "diritti",
        "abgaben", "recouvre",
        "redressement", "kwota naleznosci", "naleznosci", "tahsil edilen", "deuda liquidada",
        "deuda", "liquidacion", "cuota liquidada",
    ),
    # when a result reached the risk system, if after the inspection (a lab report entered
    # later): a column of result-entry times was offered as illicit, for its "result" (probe 28)
    "result_known_at": (
        "result known at", "result known", "result entered at", "result entered",
        "results entered", "result entry", "result entry date", "result recorded at",
        "date result entered", "result registered at", "data registo resultado",
        "data de registo do resultado", "registo resultado", "date saisie resultat",
        "saisie resultat", "fecha registro resultado", "registro resultado",
    ),
    "selection_reason": ("selection", "selection reason", "reason", "motif", "motivo",
                         "criterio", "grund", "targeting", "powod kontroli", "muayene nedeni"),
}  # fmt: skip

# Polish and Turkish names (and a few more English and Spanish ones), as ``_plain`` writes them.
_MORE_SYNONYMS = {
    "declaration_id": ("nr zgloszenia", "numer zgloszenia", "zgloszenie", "beyanname no",
                       "beyanname numarasi", "beyanname", "guia", "numero de guia"),
    "declared_at": ("data zgloszenia", "beyan tarihi", "tarih"),
    "arrival_office": ("urzad celny", "gumruk idaresi", "gumruk mudurlugu"),
    "channel": ("rodzaj przesylki", "tasima sekli", "tasima modu"),
    "operator_id": ("przewoznik", "operator pocztowy", "tasiyici", "kargo firmasi"),
    "seller_id": ("nadawca", "sprzedawca", "gonderici", "satici", "sender"),
    "seller_country": ("kraj nadawcy", "kraj wysylki", "gonderici ulkesi", "cikis ulkesi"),
    "consignee_id": ("odbiorca", "alici"),
    "consignee_region": ("wojewodztwo",),
    "origin_country": ("kraj pochodzenia", "mense", "mense ulkesi"),
    "hs_code": ("kod cn", "kod towaru", "gtip", "fraccion arancelaria", "fraccion"),
    "description": ("opis towaru", "opis", "esya tanimi", "tanim", "zawartosc",
                    "opis zawartosci", "icerik", "gonderi icerigi"),
    "quantity": ("ilosc", "miktar", "adet"),
    "gross_weight_kg": ("masa brutto", "waga", "brut agirlik", "agirlik"),
    "declared_value": ("wartosc", "fatura tutari", "kiymet", "tutar", "deger"),
    "currency": ("waluta", "doviz", "para birimi"),
}  # fmt: skip
# Brazilian names (a Receita Federal export of remessas).
_BRAZILIAN_SYNONYMS = {
    "inspected_at": ("data da verificacao", "data verificacao", "data da inspecao",
                     "data da conferencia", "data conferencia"),
    "ioss_prepaid": ("remessa conforme", "programa remessa conforme"),
    "illicit": ("resultado verificacao", "resultado da verificacao", "resultado conferencia"),
    "selection_reason": ("motivo da selecao", "motivo selecao"),
}  # fmt: skip

# German names beyond the first set (a Zoll export of e-commerce consignments).
_GERMAN_SYNONYMS = {
    "channel": ("versandart", "versandweg", "beforderungsart", "sendungsart"),
    "operator_id": ("beforderer", "zusteller", "paketdienst", "postdienstleister",
                    "kurierdienst"),
    "platform_id": ("marktplatz", "handelsplattform", "onlinemarktplatz"),
    "seller_country": ("versenderland", "land des versenders", "absenderland"),
    # Empfänger written without its umlaut too (EMPFAENGER_ID, probe 39)
    "consignee_id": ("empfanger id", "empfangernummer", "empfaenger id", "empfaengernummer"),
    "inspected_at": ("kontrolle am", "kontrolliert am", "beschau am", "beschaudatum",
                     "prufdatum", "gepruft am"),
    "revenue_recovered": ("nachforderung", "nacherhebung", "nachforderung eur",
                          "festgesetzte abgaben"),
    "offence_type": ("verstoss", "verstossart", "art des verstosses"),
}  # fmt: skip

# A marketplace's or a hub's own English (order exports, JSON dumps of a platform's API).
_MARKETPLACE_SYNONYMS = {
    "arrival_office": ("hub", "gateway", "office of entry", "entry office",
                       "customs office of entry", "location", "airport", "port of entry"),
    "operator_id": ("operateur", "operateur postal", "operateur express"),
    "seller_country": ("pays expediteur", "pays d expedition", "sender country",
                       "country of sender", "sending country",
                       "seller country code", "shipper country code"),
    "description": ("title", "product name", "item name", "goods name", "product title",
                    "item title", "article name"),
    "inspected": ("check", "check done", "checked flag", "inspected flag", "examined flag"),
    "illicit": ("discrepancy", "discrepancy found", "violation found", "exam finding"),
    "declared_at": ("created", "created at", "creation date", "order date", "ordered at",
                    "created local"),
    "consignee_region": ("postcode", "post code", "postal code", "zip", "zip code", "plz",
                         "postleitzahl", "cep", "code postal", "codigo postal", "cap",
                         "kod pocztowy", "posta kodu"),
    "inspected_at": ("check at", "check time", "check date", "checked at ms", "check at ms",
                     "inspected at ms", "inspection at", "date examined", "examined on",
                     "examined at", "date inspected", "inspected date", "date checked"),
}  # fmt: skip
# Chinese (a cross-border e-commerce 清单 export), Japanese and Korean names, written as they
# are: ``_plain`` keeps a run of these scripts as one word (it is applied to them below, as it
# drops the voicing marks of kana).
_CJK_SYNONYMS = {
    "declaration_id": ("清单编号", "申报单号", "报关单号", "运单号", "订单编号", "申报编号",
                       "申告番号", "신고번호", "报单号码", "报单号", "报单编号"),
    "declared_at": ("申报时间", "申报日期", "申报日", "申告日", "申告日時", "신고일자", "신고일"),
    "arrival_office": ("申报海关", "海关代码", "关区代码", "进境口岸", "口岸", "主管海关", "税関",
                       "세관부호", "세관", "关区", "关区代码", "关别"),
    "channel": ("运输方式", "輸送手段", "운송수단"),
    "operator_id": ("物流企业", "物流企业代码", "承运人", "운송사"),
    "platform_id": ("电商平台", "电商平台代码", "平台"),
    "seller_id": ("电商企业", "电商企业代码", "卖家", "卖家编号", "卖家代码", "发货人", "仕出人",
                  "해외공급자부호",
                  "공급자"),
    "seller_country": ("起运国", "启运国", "发货国", "仕出国", "공급자국가", "起运国家", "起运国别"),
    "consignee_id": ("订购人", "收件人", "收货人", "订购人证件号码", "輸入者", "수입자부호",
                     "수입자", "輸入者コード", "輸入者番号", "受取人", "进口人", "进口人统一编号",
                      "纳税义务人",
                     # a name runs on into its number or a Latin ID as one word to ``_plain``
                     # (收件人编号, 受取人ID were entity extras, probe 39)
                     "收件人编号", "收件人代码", "收件人id", "收货人编号", "收货人代码", "收货人id",
                     "受取人id", "受取人番号", "受取人コード", "荷受人", "荷受人コード", "수취인",
                     "수취인부호", "수취인id", "받는사람"),
    "origin_country": ("原产国", "原产地", "原産地", "원산지", "生产国别", "生产国", "原产国别"),
    "hs_code": ("商品编码", "hs编码", "税则号列", "税则号别", "货品分类号列", "品目番号", "세번부호", "세번", "統計品目番号",
                "統計番号", "税番", "hsコード", "关税编码", "税号", "품목번호", "hs부호"),
    "description": ("商品名称", "品名", "货物名称", "품명",
                    # a postal declaration's contents (内件, 内容品, 내용품: CN22/CN23)
                    "内件", "内件名称", "内件品名", "内容品", "内容品名", "내용품", "내용물"),
    # a postal declaration's category of item (CN22/CN23 check-boxes, probe 39)
    "category": ("内件性质", "内件类别", "内件种类", "邮件类别", "邮件种类", "物品类别",
                 "物品种类", "内容品の種類", "内容品種別", "郵便物の種類", "내용품 종류",
                 "내용품종류", "우편물 종류", "우편물종류"),
    "quantity": ("数量", "申报数量", "수량"),
    "gross_weight_kg": ("毛重", "重量", "毛重 千克", "総重量", "중량", "총중량"),
    "declared_value": ("总价", "申报总价", "申报价值", "申报价格", "价格", "货值", "申告価格", "価格",
                       "과세가격", "신고가격", "課税価格", "申告価額", "課税価額", "完税价格", "发票金额",
                       # a CN23's value of contents beside 内件名称 was a numeric extra and
                       # the declared value a TODO (probe 39)
                       "内件价值", "价值", "物品价值", "商品价值", "货物价值", "内容品価格",
                       "内容品の価格", "価額", "가격", "가액", "신고가액", "물품가격"),
    "currency": ("币制", "币种", "通貨", "통화", "币别"),
    "inspected": ("查验", "是否查验", "검사여부"),
    "inspected_at": ("查验时间", "查验日期", "검사일자"),
    "illicit": ("查验结果", "处理结果", "적발여부", "검사결과", "検査結果", "審査結果"),
    "revenue_recovered": ("补税金额", "补征税款", "追征税款", "추징세액"),
}  # fmt: skip
for _more in (_MORE_SYNONYMS, _GERMAN_SYNONYMS, _BRAZILIAN_SYNONYMS, _MARKETPLACE_SYNONYMS):
    for _field, _names in _more.items():
        SYNONYMS[_field] += tuple(n for n in _names if n not in SYNONYMS[_field])

# Field order in the draft: the contract's.
_FIELD_ORDER = [f.name for f in FIELDS]
_OUTCOMES = ("inspected", "inspected_at", "result_known_at", "illicit", "offence_type",
             "revenue_recovered", "selection_reason")  # fmt: skip

# Two-valued flags: yes-words and no-words of the languages above, Polish and Turkish too
# (as ``_plain`` writes them: lowercase, no accents).
_YES = frozenset(TRUE_WORDS | {"o", "oui", "s", "si", "sim", "j", "ja", "x", "pos", "positive",
                               "positif", "positivo", "hit", "fraud", "illicit", "seized",
                               "found", "detected", "irregular", "irregulier", "irregolare",
                               "non conforme", "no conforme", "nao conforme", "non compliant",
                               "noncompliant", "infraction", "infraccion", "infracao",
                               "violation", "discrepancy", "saisi", "incautado", "apreendido",
                               "retido", "retenido", "retenu", "beschlagnahmt",
                               "sequestrato", "tak", "nieprawidlowosc", "naruszenie", "evet",
                               "var", "usulsuzluk", "kacak", "是", "有", "예", "はい",
                               "查获", "적발", "違反", "הפרה", "mit befund", "beanstandet",
                               "verstoss festgestellt", "nok", "not ok", "ko", "non ok",
                               "discrepancia", "con discrepancia", "da", "выявлено",
                               "нарушение", "нарушение выявлено",
                               # a postal seizure or duty log: duty charged is a finding
                               "duty", "duty charged", "duty assessed", "reassessed",
                               "surcharge", "detained", "confiscated",
                               # a duty or value adjustment is revenue found: a finding
                               "duty adj", "duty adjusted", "duty adjustment", "value adj",
                               "value adjusted", "adjusted", "revalued", "penalty",
                               "fined"})  # fmt: skip
_NO = frozenset(FALSE_WORDS | {"non", "nao", "nein", "neg", "negative", "negatif", "negativo",
                               "clean", "ok", "-", "nil", "none", "not found",
                               "nothing found", "regular", "regulier", "regolare", "conforme",
                               "compliant", "in order", "no discrepancy",
                               "sans suite", "nie", "bez uwag", "prawidlowo", "hayir",
                               "yok", "uygun", "temiz", "no action", "no further action",
                               "nfa", "released", "cleared", "no issues", "passed", "否",
                               "无", "아니오", "いいえ", "正常", "放行", "異常なし", "תקין",
                               "ohne befund",
                               "nicht beanstandet", "ohne beanstandung", "kein befund",
                               "sin discrepancia", "нет", "не выявлено", "без нарушений",
                               "нарушений нет"})  # fmt: skip

# UN/ECE Recommendation 19 mode-of-transport codes (ASYCUDA and most customs systems), for a
# channel column of single digits; 7 (fixed installations), 8 (inland waterway) and 9 (own
# propulsion) have no contract channel and are left to the person.
_UN_TRANSPORT_MODES = {"1": "sea", "2": "rail", "3": "road", "4": "air", "5": "postal"}

# Code tables: words that name a contract value (lowercase, no accents).
_CODE_WORDS: dict[str, dict[str, str | None]] = {
    "channel": {
        "post": "postal", "poste": "postal", "postal": "postal", "mail": "postal",
        "邮递": "postal", "邮件": "postal", "邮政": "postal", "快件": "express", "快递": "express",
        "郵便": "postal", "우편": "postal", "특송": "express",
        "correos": "postal", "correio": "postal", "correios": "postal", "courrier": "postal",
        "letter": "postal", "posta": "postal", "postale": "postal", "la poste": "postal",
        "express": "express", "exp": "express", "ems": "express", "expres": "express",
        "expresso": "express", "expreso": "express", "espresso": "express",
        "courier": "courier", "coursier": "courier", "mensajeria": "courier",
        "kurier": "courier", "paket": "postal", "brief": "postal",
        "remessa expressa": "express", "encomenda expressa": "express",
        "remessa postal": "postal", "corriere": "courier", "corriere espresso": "express",
        "estafeta": "courier", "ctt": "postal",  # Portugal: a courier; its postal operator
        "spedizione postale": "postal", "pacco postale": "postal",
        "sea": "sea", "maritime": "sea", "mar": "sea", "maritimo": "sea", "ship": "sea",
        "air": "air", "aerien": "air", "aereo": "air", "luft": "air", "rail": "rail",
        "ferroviaire": "rail", "train": "rail", "road": "road", "route": "road",
        "terrestre": "road", "truck": "road", "camion": "road", "strasse": "road",
        "ไปรษณีย์": "postal", "ขนส่งเร่งด่วน": "express", "เร่งด่วน": "express",
        "ด่วนพิเศษ": "express", "ทางบก": "road", "ทางอากาศ": "air", "ทางเรือ": "sea",
        "ทางรถไฟ": "rail",
    },
    "category": {
        "merchandise": "merchandise", "sale": "merchandise", "vente": "merchandise",
        "commercial": "merchandise", "venta": "merchandise", "goods": "merchandise",
        "gift": "gift", "cadeau": "gift", "regalo": "gift", "presente": "gift",
        "geschenk": "gift", "sample": "sample", "echantillon": "sample", "muestra": "sample",
        "amostra": "sample", "muster": "sample", "return": "return", "retour": "return",
        "devolucion": "return", "devolucao": "return", "ruckware": "return",
        "venda": "merchandise", "oferta": "gift", "mercadoria": "merchandise",
        "documents": "documents", "document": "documents", "docs": "documents", "doc": "documents",
        # UPU CN22/CN23 content categories (ITMATT), by code and by words
        "91": "merchandise", "31": "gift", "32": "documents", "21": "sample", "11": "return",
        "sale of goods": "merchandise", "commercial sample": "sample", "returned goods": "return",
        # ... and as the forms print them in the languages above (probe 39: a column of them
        # under "Inhalt" was drafted as the goods' description); "other" is no category the
        # contract has: read as none declared (null), said in a CHECK
        "other": None, "others": None, "goods sale": "merchandise",
        "return of goods": "return", "returned": "return", "documentation": "documents",
        "vente de marchandises": "merchandise", "vente de marchandise": "merchandise",
        "echantillon commercial": "sample", "retour de marchandises": "return",
        "retour de marchandise": "return", "marchandise retournee": "return",
        "autre": None, "autres": None,
        "venta de mercancias": "merchandise", "muestra comercial": "sample",
        "devolucion de mercancias": "return", "devolucion de mercancia": "return",
        "documentos": "documents", "otro": None, "otros": None,
        "venda de mercadorias": "merchandise", "amostra comercial": "sample",
        "devolucao de mercadorias": "return", "devolucao de mercadoria": "return",
        "outro": None, "outros": None,
        "warenverkauf": "merchandise", "verkauf von waren": "merchandise",
        "warenmuster": "sample", "handelsmuster": "sample", "rucksendung": "return",
        "warenrucksendung": "return", "rucksendung von waren": "return",
        "dokumente": "documents", "sonstiges": None, "sonstige": None, "andere": None,
        "vendita di merci": "merchandise", "vendita": "merchandise",
        "campione commerciale": "sample", "campione": "sample", "merce restituita": "return",
        "reso": "return", "documenti": "documents", "altro": None,
        "verkoop van goederen": "merchandise", "verkoop": "merchandise",
        "handelsmonster": "sample", "monster": "sample", "retourzending": "return",
        "documenten": "documents", "anders": None, "overig": None,
        "sprzedaz towarow": "merchandise", "sprzedaz": "merchandise", "prezent": "gift",
        "upominek": "gift", "probka handlowa": "sample", "probka": "sample",
        "zwrot towaru": "return", "zwrot": "return", "dokumenty": "documents", "inne": None,
        "mal satisi": "merchandise", "satis": "merchandise", "hediye": "gift",
        "ticari numune": "sample", "numune": "sample", "iade": "return", "belgeler": "documents",
        "evrak": "documents", "diger": None,
        "продажа товаров": "merchandise", "продажа товара": "merchandise",
        "продажа": "merchandise", "подарок": "gift", "коммерческий образец": "sample",
        "образец": "sample", "возврат товара": "return", "возврат": "return",
        "документы": "documents", "прочее": None, "другое": None,
        "销售商品": "merchandise", "出售货物": "merchandise", "商品": "merchandise",
        "礼品": "gift", "礼物": "gift", "商品样品": "sample", "样品": "sample",
        "退回物品": "return", "退货": "return", "文件": "documents", "其他": None,
        "販売品": "merchandise", "贈物": "gift", "ギフト": "gift", "商品見本": "sample",
        "見本": "sample", "返送品": "return", "書類": "documents", "その他": None,
        "상품판매": "merchandise", "판매": "merchandise", "선물": "gift",
        "상업용 견본": "sample", "견본": "sample", "반송품": "return", "서류": "documents",
        "기타": None,
    },
    "offence_type": {
        "undervaluation": "undervaluation", "sous eval": "undervaluation",
        "sous evaluation": "undervaluation", "subvaloracion": "undervaluation",
        "subfaturamento": "undervaluation", "misclassification": "misclassification",
        "classement": "misclassification", "classification": "misclassification",
        "clasificacion": "misclassification", "prohibited": "prohibited",
        "prohibe": "prohibited", "prohibido": "prohibited", "restricted": "prohibited",
        "prohibition": "prohibited", "minoration": "undervaluation",
        "falsche tarifierung": "misclassification", "tarifierung": "misclassification",
        "produktpiraterie": "counterfeit", "falschung": "counterfeit",
        "unterbewertung": "undervaluation", "verbot": "prohibited", "verbote": "prohibited",
        "falscher ursprung": "origin_misdeclared", "ursprung": "origin_misdeclared",
        "sendungssplitting": "split_shipment", "aufteilung": "split_shipment",
        "minoration de valeur": "undervaluation", "erreur d espece": "misclassification",
        "espece tarifaire": "misclassification", "erreur de classement": "misclassification",
        "fausse origine": "origin_misdeclared", "fractionnement d envoi": "split_shipment",
        "split shipment": "split_shipment", "fractionnement": "split_shipment",
        "fraccionamiento": "split_shipment", "split": "split_shipment",
        "counterfeit": "counterfeit", "contrefacon": "counterfeit",
        "falsificacion": "counterfeit", "contrafacao": "counterfeit", "origin": "origin_misdeclared",
        "origine": "origin_misdeclared", "origen": "origin_misdeclared",
        "vague": "vague_description", "description": "vague_description", "other": "other",
        "autre": "other", "otro": "other", "outro": "other",
        # European Portuguese (probe 27's export)
        "subfaturacao": "undervaluation", "subavaliacao": "undervaluation",
        "classificacao": "misclassification", "proibido": "prohibited",
        "fracionamento": "split_shipment", "origem": "origin_misdeclared",
    },
    "selection_reason": {
        "random": "random", "alea": "random", "aleatoire": "random", "aleatorio": "random",
        "aleatoria": "random", "selecao aleatoria": "random", "seleccion aleatoria": "random",
        "zufall": "random", "zufallig": "random", "casuale": "random",
        "สุ่ม": "random", "สุ่มตรวจ": "random", "随机": "random", "随机抽查": "random",
    },
}  # fmt: skip

# Words naming a party (a trader, an agent) in an extra column's name: an entity extra, which
# gets history features as sellers do.
_PARTY_WORDS = frozenset({
    "id", "tin", "eori", "broker", "declarant", "transitaire", "agent", "forwarder",
    "spediteur", "courier", "importer", "exporter", "supplier", "agente", "despachante",
    "commissionnaire", "anmelder", "vertreter", "transportista", "transitario",
    # business registration numbers (Australia's ABN, an EU VAT number, Brazil's CNPJ) and
    # the importer of record as Australia's ICS names it: "Owner ABN" was a numeric extra
    "abn", "vat", "cnpj", "owner", "nif", "siret",
})  # fmt: skip

# Weight units written in the cell, to kilograms.
_WEIGHT_UNITS = {"g": 0.001, "gr": 0.001, "grs": 0.001, "gram": 0.001, "grams": 0.001,
                 "kg": 1.0, "kgs": 1.0, "kilo": 1.0, "kilos": 1.0, "lb": 0.45359237,
                 "lbs": 0.45359237, "oz": 0.028349523125,
                 # UN/ECE Recommendation 20 codes, as customs declarations write units (GRM,
                 # KGM were read as an extra and the grams as kilograms, probe 28), and words
                 "grm": 0.001, "kgm": 1.0, "lbr": 0.45359237, "onz": 0.028349523125,
                 "gramas": 0.001, "gramos": 0.001, "gramm": 0.001, "quilo": 1.0,
                 "quilos": 1.0}  # fmt: skip
_GRAM_NAMES = ("g", "gr", "grams", "gramm", "grammes", "gramos", "gramas", "en g", "in g")
# Other weight units a name may give its numbers in, to kilograms
_UNIT_NAMES = {"lb": 0.45359237, "lbs": 0.45359237, "pound": 0.45359237,
               "pounds": 0.45359237, "oz": 0.028349523125, "ounce": 0.028349523125,
               "ounces": 0.028349523125,
               # metric tonnes (a freight export's "Gross Weight (t)", "Peso (ton)") were read
               # as kilograms, 1000x too light (probe)
               "t": 1000.0, "tonne": 1000.0, "tonnes": 1000.0, "ton": 1000.0, "tons": 1000.0,
               "mt": 1000.0, "tonnen": 1000.0, "tonelada": 1000.0, "toneladas": 1000.0,
               "tonnellate": 1000.0}  # fmt: skip
# Words of a value column's name that say it is a price per unit, not the parcel's value
_PER_UNIT_WORDS = frozenset({"unit", "unitaire", "unitario", "unitaria", "einzel",
                             "einzelpreis", "stuckpreis", "each"})  # fmt: skip
# Delivery terms (Incoterms) an export names a value of the goods by: FOB, CIF
_DELIVERY_TERMS = frozenset({"fob", "cif", "cfr", "cnf", "cip", "cpt", "exw", "fca", "fas"})
# Amounts a name says are in a currency's minor unit (cents): x 0.01
_MINOR_UNIT_NAMES = ("cents", "cent", "centimes", "centavos", "centesimi", "pence", "kopecks",
                     "minor units", "minor unit", "groszy", "kurus")  # fmt: skip
# ISO 4217 codes that are also words of a column's name ("all items", "try"): never read as
# the currency a name gives its amounts in
_CODE_WORDS_NOT_CURRENCY = frozenset({"all", "top", "try", "cup", "mad", "bob", "sos", "pen",
                                      "mop", "lak", "ern", "bam", "kes", "gel"})  # fmt: skip

# Date formats tried when the values are not ISO 8601, day first before month first.
_DATE_FORMATS = (
    "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M",
    "%m/%d/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M", "%d-%m-%Y", "%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M", "%Y.%m.%d",
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y%m%d%H%M%S", "%Y%m%d",
    "%d/%m/%y %H:%M", "%d/%m/%y", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p",
    "%d/%m/%Y %I:%M:%S %p", "%d/%m/%Y %I:%M %p", "%Y-%m-%d %I:%M:%S %p", "%Y-%m-%d %I:%M %p",
    # two-digit years (a research file's 13-01-02), after the four-digit ones: several may read
    # every value, and ``_set_aside_two_digit_years`` says which to keep
    "%d-%m-%y", "%d.%m.%y", "%m/%d/%y", "%m-%d-%y", "%y-%m-%d", "%y/%m/%d", "%y.%m.%d",
    # English month names (a spreadsheet's 01-Mar-2026, a report's 1 March 2026, Mar 1, 2026)
    "%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M", "%d-%b-%Y", "%d-%b-%y", "%d %b %Y %H:%M", "%d %b %Y",
    "%d %B %Y %H:%M", "%d %B %Y", "%b %d, %Y %I:%M %p", "%b %d, %Y", "%B %d, %Y",
    # Chinese and Japanese (2026年3月1日), Korean (2026. 3. 1.)
    "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日", "%Y. %m. %d. %H:%M",
    "%Y. %m. %d.",
)  # fmt: skip
# Currency signs written beside amounts, to ISO 4217 (the contract's common mistakes, and signs
# of one currency only: "$", "¥" and "kr" name several, so a person says which).
_CURRENCY_SIGNS = {**{k.lower(): v for k, v in COMMON_MISTAKES.items()},
                   "cn¥": "CNY", "元": "CNY", "hk$": "HKD", "c$": "CAD", "ca$": "CAD",
                   "a$": "AUD", "au$": "AUD", "nz$": "NZD", "s$": "SGD", "mx$": "MXN",
                   "zł": "PLN", "kč": "CZK", "₽": "RUB", "₫": "VND", "₱": "PHP", "฿": "THB",
                   "₪": "ILS", "₴": "UAH", "us $": "USD", "m.n.": "MXN", "mn": "MXN",
                   "tl": "TRY", "₺": "TRY", "ytl": "TRY"}  # fmt: skip

# Numbers: (decimal, thousands) -> pattern of a number written so, with an optional unit.
_NUMBER_STYLES: dict[tuple[str, str | None], str] = {
    (".", None): r"-?\d+(?:\.\d+)?",
    (",", None): r"-?\d+(?:,\d+)?",
    # with the Indian grouping too (1,90,581.82: lakh and crore, groups of two above three)
    (".", ","): r"-?(?:\d{1,3}(?:,\d{3})*|\d{1,2}(?:,\d{2})+,\d{3})(?:\.\d+)?",
    (",", "."): r"-?\d{1,3}(?:\.\d{3})*(?:,\d+)?",
    # a space between thousands, plain or unbreakable (U+00A0, U+202F: French typography)
    (",", " "): r"-?\d{1,3}(?:[ \u00a0\u202f]\d{3})*(?:,\d+)?",
}
_UNIT = r"\s*([A-Za-z]{1,6})"


@dataclass
class Column:
    """What the sample says about one source column."""

    name: str
    filled: float  # share of rows with a value
    distinct: int
    unique: float  # distinct values / filled rows
    values: list[str]  # the sample's non-empty cells, as text, stripped
    typed: str  # "datetime", "number" or "text": the source's own type (Parquet, workbook)
    words: str  # the name without accents or case, words separated by one space
    memo: dict[str, Any] = field(default_factory=dict, repr=False)  # readings, computed once

    def fit(self, pattern: str) -> float:
        """Share of the values matching ``pattern`` whole (each pattern asked once)."""
        key = f"fit:{pattern}"
        if key not in self.memo:
            rx = re.compile(pattern)
            hits = sum(bool(rx.fullmatch(v)) for v in self.values)
            self.memo[key] = hits / len(self.values) if self.values else 0.0
        return self.memo[key]


@dataclass
class Proposal:
    """A field's spec in the draft, and what a person should check about it."""

    spec: Any  # a column name or a spec dict
    checks: list[str] = field(default_factory=list)
    source: str | None = None  # the column it reads (None: a constant)


@dataclass
class Draft:
    """A drafted mapping: its YAML text, and what it maps, guesses and could not find."""

    text: str
    results: bool  # a results mapping (``outcomes ingest``), not a declarations one
    mapped: dict[str, str]  # field -> source column (or "constant")
    checks: dict[str, list[str]]  # field (or extra) -> what to check
    missing: list[str]  # required fields not found
    extras: list[str]  # source columns proposed as extras
    ignored: list[str]  # source columns left out (a person's too, with why)
    personal: list[str] = field(default_factory=list)  # a person's: extras commented out


# Latin letters that carry no combining accent, so NFKD leaves them whole (Polish ł, Turkish ı,
# Nordic ø): written as their base letters, as the accents are dropped.
_UNDECOMPOSED = str.maketrans(
    {"ł": "l", "Ł": "L", "ı": "i", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss"}
)


# Traditional Chinese characters of customs column names (Taiwan, Hong Kong, Macau: 報單號碼,
# 完稅價格, 幣別) written as their simplified forms, so one list of names serves both scripts.
# Both sides of a comparison go through ``_plain``, so a Japanese name sharing a character
# still meets its own synonym.
_TRADITIONAL = str.maketrans(
    dict(
        zip(
            "報單號碼貨數價幣稅運進關檢驗結處補徵額總產發賣啟稱務類別國際輸間時區統編證業應買"
            "電話費質無條項據記錄實營銷種組裝櫃艙機場郵遞資訊網臺灣門華個來貿審許監與為對納"
            "繳違規緝獲沒鑑點廠線態狀況離岸憑則",
            "报单号码货数价币税运进关检验结处补征额总产发卖启称务类别国际输间时区统编证业应买"
            "电话费质无条项据记录实营销种组装柜舱机场邮递资讯网台湾门华个来贸审许监与为对纳"
            "缴违规缉获没鉴点厂线态状况离岸凭则",
            strict=True,
        )
    )
)


def _plain(text: str) -> str:
    """Lowercase, no accents, words separated by one space (``DATE_DÉPÔT`` -> ``date depot``,
    ``Należność`` -> ``naleznosc``); Traditional Chinese as simplified (``報單`` -> ``报单``)."""
    text = str(text).translate(_UNDECOMPOSED).translate(_TRADITIONAL)
    decomposed = unicodedata.normalize("NFKD", text)
    # accents off; scripts without them (Hangul decomposes too) composed back
    # marks of class 0 too (Thai vowels and tones: น้ำหนัก split into three words otherwise)
    stripped = unicodedata.normalize(
        "NFC",
        "".join(
            c
            for c in decomposed
            if not unicodedata.combining(c) and unicodedata.category(c) not in ("Mn", "Mc")
        ),
    )
    # split camelCase before lowering (DeclarationDate -> declaration date)
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stripped)
    return " ".join(re.findall(r"[0-9a-z]+|[^\W\d_]+", spaced.lower()))


# A name in a script written without spaces (Thai, Chinese, Japanese) is a compound written as
# one word: เลขประจำตัวผู้รับ is "number" + "id" + "consignee", 收件人姓名 "recipient" + "name".
# Its words are found inside it (``_said``), as a spaced name's are among its words: matched
# as whole names only, the consignee's national id under that Thai name was drafted a raw
# numeric extra, and the declared value, transport and seller were TODOs or extras (probe 42).
_UNSPACED = unspaced_class()
_UNSPACED_TEXT = re.compile(f"[{_UNSPACED}]")
# a word running from such a script into another is the two ("收件人id": 收件人, id)
_SCRIPT_PARTS = re.compile(f"[{_UNSPACED}]+|[^{_UNSPACED}]+")
# Such words as written, marks kept, by their ``_plain`` spelling: found inside a name with
# their marks, as Thai without them is short and inside too many names (ชื่อ "name" is ชอ
# then, and in ช่อง "lane" too).
_AS_WRITTEN: dict[str, set[str]] = {}


def _as_written(text: str) -> str:
    """``text`` as compared with its marks kept: case-folded, Traditional Chinese as
    simplified (``_plain`` without dropping marks or splitting words)."""
    return unicodedata.normalize("NFC", str(text).translate(_TRADITIONAL).casefold())


def _vocabulary(*words: str) -> frozenset[str]:
    """Words as ``_plain`` writes them, for ``_said`` (Thai without its marks: ผู้รับ is ผรบ);
    those of a script written without spaces are kept as written too, to be found inside a
    name."""
    for word in words:
        if _UNSPACED_TEXT.search(word):
            _AS_WRITTEN.setdefault(_plain(word), set()).add(_as_written(word))
    return frozenset(_plain(w) for w in words)


# Code words as ``_plain`` writes the values they meet (郵便 is 邮便 by then)
_CODE_WORDS = {
    name: {_plain(word): value for word, value in words.items()}
    for name, words in _CODE_WORDS.items()
}

# Yes/no words as ``_plain`` writes the values they meet (Thai without its vowel marks,
# Traditional Chinese as simplified: 違反 is 违反 by then)
_YES = frozenset(_plain(w) for w in _YES | {"พบความผิด", "ผิด", "ใช่"})
_NO = frozenset(_plain(w) for w in _NO | {"ถูกต้อง", "ไม่พบความผิด", "ไม่ใช่"})
# A price per unit in the scripts written without spaces, found inside a name (ราคาต่อหน่วย)
_PER_UNIT_WORDS = _PER_UNIT_WORDS | _vocabulary("ต่อหน่วย", "单价", "単価", "단가")

# Italian names (an ADM report), as ``_plain`` writes them
_ITALIAN_SYNONYMS = {
    "arrival_office": ("ufficio doganale", "dogana", "ufficio", "codice ufficio"),
    "channel": ("tipo spedizione", "modalita spedizione", "canale"),
    "description": ("descrizione merce", "descrizione"),
    "inspected_at": ("data controllo", "controllo data"),
    "revenue_recovered": ("diritti accertati", "maggiori diritti", "controllo diritti accertati"),
    "illicit": ("esito controllo", "controllo esito"),
    "inspected": ("controllo eseguito", "controllato"),
}  # fmt: skip
for _field, _names in _ITALIAN_SYNONYMS.items():
    SYNONYMS[_field] += tuple(n for n in _names if n not in SYNONYMS[_field])

# Russian names (a ФТС-style export of международные почтовые отправления) and Indian ones
# (an ICEGATE bill of entry: CTH is the tariff heading, IEC the importer's code), written as
# they are and put through ``_plain`` below with the CJK ones.
_RUSSIAN_INDIAN_SYNONYMS = {
    "declaration_id": ("номер декларации", "номер отправления", "номер пто", "be no",
                       "bill of entry no", "be number"),
    "declared_at": ("дата декларации", "дата подачи", "дата регистрации", "be date"),
    "arrival_office": ("таможенный пост", "код таможенного поста", "таможня", "port code"),
    "channel": ("вид отправления", "способ доставки"),
    "operator_id": ("перевозчик", "оператор"),
    "seller_id": ("отправитель", "продавец", "поставщик", "supplier code"),
    "seller_country": ("страна отправления", "страна отправителя"),
    "consignee_id": ("получатель", "iec", "importer code", "iec code"),
    "origin_country": ("страна происхождения", "country of origin code"),
    "hs_code": ("код тн вэд", "тн вэд", "код товара", "cth", "ctsh", "ritc"),
    "description": ("описание товара", "наименование товара", "описание", "наименование",
                    # a postal item's contents (вложение, содержимое: CN22/CN23)
                    "вложение", "описание вложения", "содержимое", "описание содержимого",
                    "наименование вложения"),
    "category": ("категория отправления", "категория вложения", "характер вложения",
                 "вид вложения"),
    "quantity": ("количество",),
    "gross_weight_kg": ("вес брутто", "вес"),
    "declared_value": ("стоимость", "таможенная стоимость", "фактурная стоимость",
                       "assessable value"),
    "currency": ("валюта", "код валюты"),
    "inspected": ("досмотр", "проведен досмотр"),
    "inspected_at": ("дата досмотра",),
    "illicit": ("результат досмотра", "нарушение", "выявлено нарушение"),
    "revenue_recovered": ("доначислено", "доначисленные платежи"),
}  # fmt: skip
# Hebrew (an Israel Tax Authority export: פרט מכס is the tariff item) and Thai names.
_HEBREW_THAI_SYNONYMS = {
    "declaration_id": ("מספר רשימון", "רשימון", "מספר משלוח", "เลขที่ใบขนสินค้า",
                       "เลขที่ใบขน", "ใบขนสินค้า"),
    "declared_at": ("תאריך", "תאריך הגשה", "วันที่", "วันที่ยื่น", "วันที่นำเข้า"),
    "arrival_office": ("בית מכס", "תחנת מכס", "ด่านศุลกากร", "สำนักงานศุลกากร"),
    # Thai writes a name as one word: these are found inside one (ประเภทการขนส่ง, ชื่อผู้ขาย,
    # เลขประจำตัวผู้รับ, มูลค่าสำแดง: _said)
    "channel": ("ประเภทการขนส่ง", "วิธีการขนส่ง", "การขนส่ง"),
    "operator_id": ("ผู้ขนส่ง", "บริษัทขนส่ง"),
    "platform_id": ("แพลตฟอร์ม",),
    "seller_id": ("ספק", "שולח", "ผู้ส่ง", "ผู้ขาย"),
    "seller_country": ("ประเทศผู้ขาย", "ประเทศผู้ส่ง", "ประเทศผู้ส่งออก"),
    "consignee_id": ("יבואן", "מספר זהות יבואן", "זהות יבואן", "נמען", "ผู้นำเข้า",
                     "เลขประจำตัวผู้นำเข้า", "ผู้รับ", "ผู้ซื้อ"),
    "consignee_region": ("จังหวัด", "จังหวัดผู้รับ"),
    "origin_country": ("ארץ מקור", "ארץ ייצור", "ประเทศกำเนิด", "ประเทศต้นกำเนิด", "ประเทศต้นทาง",
                       "กำเนิด"),
    "hs_code": ("פרט מכס", "קוד מכס", "פרט תעריף", "พิกัดศุลกากร", "รหัสพิกัด", "พิกัด"),
    "description": ("תיאור", "תיאור טובין", "รายการสินค้า", "ชื่อสินค้า", "รายละเอียดสินค้า"),
    "quantity": ("כמות", "จำนวน"),
    "gross_weight_kg": ("משקל", "משקל ברוטו", "น้ำหนัก", "น้ำหนักรวม"),
    "declared_value": ("ערך", "שווי", "ערך מוצהר", "ราคา", "มูลค่า", "ราคาสินค้า"),
    "currency": ("מטבע", "สกุลเงิน"),
    "inspected_at": ("תאריך בדיקה", "วันที่ตรวจ"),
    "illicit": ("ממצא", "תוצאת בדיקה", "ผลการตรวจ", "ผลการตรวจสอบ"),
    "selection_reason": ("เหตุผล", "เหตุผลการตรวจ", "เหตุผลที่ตรวจ"),
    "revenue_recovered": ("מס שנגבה", "ภาษีที่เรียกเก็บเพิ่ม", "อากรที่เรียกเก็บเพิ่ม"),
}  # fmt: skip
# Vietnamese (VNACCS) and Indonesian (CEISA) names, as written: "Trị giá (VND)" was left an
# extra and the seller's country taken for the origin (probe)
_SOUTHEAST_ASIAN_SYNONYMS = {
    "declaration_id": ("số tờ khai", "so to khai", "nomor aju", "nomor pengajuan",
                       "nomor pendaftaran", "nomor dokumen"),
    "declared_at": ("ngày đăng ký", "ngày khai", "tanggal pendaftaran", "tanggal aju",
                    "tanggal dokumen"),
    "arrival_office": ("chi cục hải quan", "hải quan", "kantor pabean", "kppbc"),
    "seller_id": ("người bán", "người xuất khẩu", "pengirim", "penjual", "eksportir"),
    "seller_country": ("nước bán", "nước xuất khẩu", "negara pengirim", "negara muat"),
    "consignee_id": ("mã người nhận", "người nhận", "người nhập khẩu", "penerima", "importir",
                     "npwp"),
    "origin_country": ("xuất xứ", "nước xuất xứ", "negara asal"),
    "hs_code": ("mã hs", "mã số hàng hóa", "pos tarif", "kode hs"),
    "description": ("mô tả hàng hóa", "tên hàng", "uraian barang"),
    "quantity": ("số lượng", "jumlah", "jumlah satuan"),
    "gross_weight_kg": ("trọng lượng", "trọng lượng kg", "berat", "berat kotor", "bruto"),
    "declared_value": ("trị giá", "trị giá hải quan", "trị giá tính thuế", "nilai pabean",
                       "nilai", "harga", "nilai cif", "nilai fob"),
    "currency": ("tiền tệ", "loại tiền", "mã tiền tệ", "mata uang", "valuta"),
}  # fmt: skip
for _extra_names in (
    _CJK_SYNONYMS,
    _RUSSIAN_INDIAN_SYNONYMS,
    _HEBREW_THAI_SYNONYMS,
    _SOUTHEAST_ASIAN_SYNONYMS,
):
    for _field, _names in _extra_names.items():
        _vocabulary(*_names)
        SYNONYMS[_field] += tuple(_plain(n) for n in _names if _plain(n) not in SYNONYMS[_field])


@functools.cache
def _synonyms_as_written() -> dict[str, str]:
    """Every field's synonyms of a script written without spaces, as written (marks kept) ->
    as ``_plain`` writes them."""
    return {
        form: synonym
        for synonyms in SYNONYMS.values()
        for synonym in synonyms
        if " " not in synonym and len(synonym) > 1 and _UNSPACED_TEXT.search(synonym)
        for form in _AS_WRITTEN.get(synonym, {synonym})
    }


@functools.cache
def _synonyms_inside(name: str) -> frozenset[str]:
    """The synonyms (as ``_plain`` writes them) a name written without spaces is read as: the
    longest from its start, then from where it ends, as a dictionary segments such text
    (เหตุผลการตรวจ, "reason for the inspection", is เหตุผล + การตรวจ, never เหตุ +
    ผลการตรวจ, "result of the inspection"; วันที่ตรวจสอบ is วันที่ตรวจ, the inspection's date,
    not วันที่, the declaration's)."""
    written = _as_written(name)
    lexicon = _synonyms_as_written()
    longest = max(map(len, lexicon), default=0)
    found, start = set(), 0
    while start < len(written):
        for size in range(min(longest, len(written) - start), 1, -1):
            synonym = lexicon.get(written[start : start + size])
            if synonym is not None:
                found.add(synonym)
                start += size
                break
        else:
            start += 1
    return frozenset(found)


@functools.cache
def _name_words(words: str) -> frozenset[str]:
    """The words of a name as ``_plain`` writes it, a word mixing a script without spaces with
    another split where they meet (``受取人id``: ``受取人id``, ``受取人``, ``id``)."""
    out = set(words.split())
    for word in list(out):
        if _UNSPACED_TEXT.search(word):
            out.update(_SCRIPT_PARTS.findall(word))
    return frozenset(out)


def _said(column: Column, vocabulary: frozenset[str] | tuple[str, ...]) -> frozenset[str]:
    """The entries of ``vocabulary`` (as ``_plain`` writes them) a column's name says: a word
    of it, words of it in a row, or a word of a script written without spaces anywhere inside
    it (``ผู้รับ`` in ``เลขประจำตัวผู้รับ``), with its marks. One character alone is no word."""
    return _said_in(column.words, column.name, vocabulary)


@functools.cache
def _said_in(words: str, name: str, vocabulary: frozenset[str] | tuple[str, ...]) -> frozenset[str]:
    parts = _name_words(words)
    padded = f" {words} "
    written = _as_written(name) if _UNSPACED_TEXT.search(words) else ""
    found = set()
    for entry in vocabulary:
        if entry in parts or (" " in entry and f" {entry} " in padded):
            found.add(entry)
        elif written and len(entry) > 1 and " " not in entry and _UNSPACED_TEXT.search(entry):
            forms = _AS_WRITTEN.get(entry)
            if any(f in written for f in forms) if forms else entry in words:
                found.add(entry)
    return frozenset(found)


# A path segment of a nested JSON or XML field that names the goods-item container, not the
# field (GoodsItems.HS, Articles.Qty, Lignes.Valeur): "items" alone is a quantity's synonym.
_ITEM_CONTAINER = re.compile(
    r"(goods)?_?(items?|articles?|lines?|positions?|lignes?|artigos?|itens|posten|waren)",
    re.IGNORECASE,
)


def _without_item_container(name: str) -> str:
    """A nested field's name without its goods-item container's segment (``GoodsItems.HS`` ->
    ``HS``); other names as they are."""
    parts = name.split(".")
    if len(parts) < 2:
        return name
    kept = [p for p in parts[:-1] if not _ITEM_CONTAINER.fullmatch(p)]
    return ".".join([*kept, parts[-1]])


def profile(raw: pd.DataFrame, sample_rows: int = SAMPLE_ROWS) -> list[Column]:
    """One ``Column`` per source column, from rows spread evenly over the file."""
    import numpy as np
    import pandas as pd

    n = len(raw)
    rows = np.unique(np.linspace(0, n - 1, min(n, sample_rows)).astype(int)) if n else []
    sample = raw.iloc[rows]
    out = []
    for name in raw.columns:
        column = sample[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            typed = "datetime"
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            typed = "number"
        else:
            typed = "text"
        present = column.dropna()
        if typed == "number":  # a spreadsheet's 85044000.0 is the code 85044000
            present = present.map(lambda v: str(int(v)) if float(v).is_integer() else str(v))
        text = present.astype(str).str.strip()
        text = text[text != ""]
        if len(text) and not text.str.isascii().all():
            # every script's decimal digits and full-width marks read as ASCII, as the
            # mapping reads them (a Japanese export's １，２３４ among 1,234, a Gulf export's
            # ٣٦٫٦٧ among 36.67: a value column drafted as an extra)
            text = text.str.translate(ascii_digit_table())
        filled = len(text) / len(column) if len(column) else 0.0
        distinct = int(text.nunique())
        out.append(
            Column(
                name=str(name),
                filled=filled,
                distinct=distinct,
                unique=distinct / len(text) if len(text) else 0.0,
                values=text.tolist(),
                typed=typed,
                words=_plain(_without_item_container(str(name))),
            )
        )
    return out


# Fields naming a party by its identifier
_PARTY_IDS = ("operator_id", "platform_id", "seller_id", "consignee_id")
# Words of a name saying it is where a party is, not who: never the party's identifier
# (``Recipient Postcode`` is a region of many consignees, ``Seller City`` a place).
# Such words of the scripts written without spaces (found inside a name: ``_said``), places and
# addresses apart, as a person has an address and a postcode, no country.
_UNSPACED_PLACES = _vocabulary(
    "ประเทศ", "จังหวัด", "เมือง", "อำเภอ", "国家", "国别", "城市", "省份", "地区", "都道府県",
    "국가", "도시",
)  # fmt: skip
_UNSPACED_ADDRESSES = _vocabulary(
    "ที่อยู่", "รหัสไปรษณีย์", "地址", "邮编", "邮政编码", "住所", "郵便番号", "주소", "우편번호",
)  # fmt: skip
_PLACE_WORDS = frozenset({"postcode", "zip", "plz", "cep", "city", "town", "region", "province",
                          "state", "country", "address", "street", "postal"}
                         | _UNSPACED_PLACES | _UNSPACED_ADDRESSES)  # fmt: skip


def _name_score(column: Column, name: str) -> float:
    """How well a column's name says ``name``: 1 when the whole name is a synonym, 0.8 when a
    synonym of several words is in it, 0.6 when a one-word synonym is one of its words
    (``seller`` in ``seller country``) or inside a name written without spaces (``ผู้ขาย`` in
    ``ชื่อผู้ขาย``, ``收件人`` in ``收件人编号``), 0 otherwise."""
    words = column.words
    parts = set(words.split())
    if name in _PARTY_IDS and _said(column, _PLACE_WORDS):
        return 0.0
    # a postal export's office of posting (ORIG_OFFICE) beside its office of destination was
    # drafted as the arrival office (probe 11): an office of origin never is
    if name == "arrival_office" and _said(column, _DEPARTURE_WORDS):
        return 0.0
    # an amount a control recovered is the result's, never what was declared: "Valor_Recuperado"
    # holds "valor", the declared value's name, and was not the declared value (probe 27)
    recovered = bool(_said(column, _RECOVERED_WORDS))
    if recovered and FIELDS_BY_NAME[name].scope == "declaration":
        return 0.0
    padded = f" {words} "
    split = _name_words(words)
    inside = _synonyms_inside(column.name) if _UNSPACED_TEXT.search(words) else frozenset()
    best = 0.0
    for synonym in SYNONYMS.get(name, ()):
        if words == synonym:
            best = 1.0
            break
        if synonym in split or synonym in inside or f" {synonym} " in padded:
            best = max(best, 0.8 if len(synonym.split()) > 1 else 0.6)
    # the lines' net mass was taken for the gross weight beside the item's gross (probe 11):
    # a net weight is the weight only when there is no gross one
    if name == "gross_weight_kg" and "net" in parts and "gross" not in parts:
        best *= 0.7
    # a recovered amount is revenue however the amount is called (direitos, receita, valor,
    # importo): one list of participles, not every language's name for each amount
    if name == "revenue_recovered" and recovered:
        best = max(best, 0.8)
    return best


# Words of a name saying an office (or place) is where the goods left from, not arrived at
_DEPARTURE_WORDS = frozenset({
    "orig", "origin", "posting", "dispatch", "departure", "export", "sender", "sending",
    "origine", "origen", "herkunft", "abgang",
    *_vocabulary("ต้นทาง", "出境", "始发"),
})  # fmt: skip


# --- value readings ----------------------------------------------------------------------------


def _hs_fit(column: Column) -> float:
    """1 when the values are HS codes (6-10 digits, or in tariff groups: 6109.10.00), 0.6 when
    some lost a leading zero (5, 7, 9 digits, a minority), 0 otherwise."""
    # codes repeat across parcels: a column of unique 8-digit numbers is an id, not HS codes;
    # 2026.01.01 is grouped like 6109.10.00, and is a date
    if column.unique >= 0.9 or _date_formats(column) is not None:
        return 0.0
    # no chapter 00: zero-padded numbers (an importer's 000001113) are ids (probe, 2026-12)
    if column.fit(r"00.*") > 1 - FITS:
        return 0.0
    if column.fit(r"\d{6,10}|\d{2}(?:[. -]?\d{2}){2,4}|\d{4}\.\d{2}-\d{3}") >= FITS:
        return 1.0
    if column.fit(r"\d{5,10}") >= FITS and column.fit(r"\d{5}|\d{7}|\d{9}") < 0.5:
        return 0.6
    return 0.0


def _country_codes(column: Column) -> str | None:
    """``alpha2``, ``alpha3`` or ``numeric`` when (nearly) every value is such an ISO code."""
    if not column.values or column.distinct > 260:
        return None
    upper = [v.upper() for v in column.values]
    for kind, table in (("alpha2", ALPHA2), ("alpha3", ALPHA3_TO_ALPHA2)):
        if sum(v in table for v in upper) / len(upper) >= FITS:
            return kind
    if sum(v.zfill(3) in NUMERIC_TO_ALPHA2 for v in upper) / len(upper) >= FITS:
        return "numeric"
    # names (China, Allemagne, 中国), ISO codes among them; a text column only: numbers and
    # dates are never names
    if column.typed == "text" and column.fit(r"\D.*") >= FITS:
        names = name_to_alpha2()
        read = sum(
            v in ALPHA2 or v in ALPHA3_TO_ALPHA2 or plain_name(orig) in names
            for v, orig in zip(upper, column.values, strict=True)
        )
        if read / len(upper) >= FITS:
            return "name"
    return None


def _is_currency(column: Column) -> bool:
    """Currency codes or signs, nearly all read; or, in a column named for the currency, most
    (the others are listed for the person: ``_currency_spec``)."""
    if not column.values or column.distinct > 60:
        return False
    read = sum(_currency_code(v) is not None for v in column.values) / len(column.values)
    # a column whose whole name says currency, of a few codes none can read (a national
    # table: China's customs writes 142 for CNY, 502 for USD), is the currency all the same,
    # its codes listed for the person to map
    named = _name_score(column, "currency")
    return (
        read >= FITS or (read >= 0.5 and named >= 0.8) or (named == 1.0 and column.distinct <= 20)
    )


def _currency_spec(
    source: str, signs: list[str], part: bool, named: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The currency's spec from a column of codes or signs (``part``: the sign beside an
    amount): signs that are no ISO code in a values table, the codes kept as written; a sign
    several currencies write ($) read as ``named``, the currency the column's name gives."""
    spec: dict[str, Any] = {"column": source}
    if part:
        spec["part"] = "unit"
    table, by_name = {}, []
    checks = []
    for sign in sorted(set(signs)):
        code = _currency_code(sign)
        if code is None and named is not None:
            code = named
            by_name.append(sign)
            checks.append(f"{sign} read as {named}, the currency the column's name gives")
        if code is not None and code != sign:
            table[sign] = code
    if table:
        spec["values"] = table
        spec["unlisted"] = "keep"
    if read := {k: v for k, v in table.items() if k not in by_name}:
        checks.append(f"currency signs read as {', '.join(f'{k}={v}' for k, v in read.items())}")
    unread = sorted({sign for sign in signs if sign not in table and _currency_code(sign) is None})
    if unread:
        spec["values"] = table
        spec["unlisted"] = "keep"
        checks.append(
            f"currency signs not read: {', '.join(unread[:8])}: give their ISO codes in values "
            "(ingest refuses rows holding them)"
        )
    return spec, checks


def _flag_values(column: Column) -> tuple[list[str], list[str]] | None:
    """The cells meaning yes and those meaning no, when a column holds only such words: two
    (or one), or a few results each of which says yes or no (a seizure log's SEIZED, DUTY,
    RELEASED: read as no result, probe 11)."""
    if column.typed == "datetime" or not 1 <= column.distinct <= 6:
        return None
    distinct = sorted(set(column.values))
    yes = [v for v in distinct if _plain(v) in _YES]
    no = [v for v in distinct if _plain(v) in _NO]
    if len(yes) + len(no) != len(distinct):
        return None
    if len(distinct) <= 2 and (len(yes) > 1 or len(no) > 1):
        return None  # two yes-words (Y, YES) or two no-words are no flag of two values
    return yes, no


def _result_codes(column: Column) -> tuple[list[str], list[str], list[str]] | None:
    """A finding's national codes (NIL, SEIZED, DUTY ADJ, REFERRED) in a column named as the
    result: the yes-words, the no-words and the codes that are neither, when both a yes and a
    no are known and at most half the codes are not. Drafted as ``illicit`` with the unknown
    codes named in a CHECK (their rows are refused until each is placed), rather than leaving
    the finding a TODO for two codes in six (probe 33)."""
    if column.typed == "datetime" or not 2 <= column.distinct <= 12:
        return None
    if _named_as_result(column) != "illicit":
        return None
    distinct = sorted(set(column.values))
    yes = [v for v in distinct if _plain(v) in _YES]
    no = [v for v in distinct if _plain(v) in _NO]
    unknown = [v for v in distinct if v not in yes and v not in no]
    if not (yes and no) or len(unknown) > len(distinct) / 2:
        return None
    return yes, no, unknown


def _memo(reading: Any) -> Any:
    """``reading(column)`` computed once per column (each is asked by several fields)."""

    def once(column: Column) -> Any:
        if reading.__name__ not in column.memo:
            column.memo[reading.__name__] = reading(column)
        return column.memo[reading.__name__]

    once.__name__ = reading.__name__
    once.__doc__ = reading.__doc__
    return once


# Words naming a country in a column's name (as ``_plain`` writes them): a plain "country" says
# neither whose nor which, so it is the goods' origin, the country the contract requires
_COUNTRY_WORDS = frozenset({"country", "cntry", "ctry", "pays", "pais", "land", "paese", "ulke",
                            "kraj", "страна", "negara", "nuoc",
                            *_vocabulary("ประเทศ", "国家", "国别", "국가")})  # fmt: skip


def _names_country(column: Column) -> bool:
    return bool(_said(column, _COUNTRY_WORDS))


@_memo
def _own_country_codes(column: Column) -> bool:
    """Whether a column holds an export's own country codes (a research file's CNTRY376, a
    national table's 142): short codes as the contract takes them, a few hundred at most and
    repeated, that no ISO 3166 reading takes (codes most of which are ISO are an ISO column
    with errors, for a values table). Asked only of a column whose name says country."""
    import pandas as pd

    if column.typed == "datetime" or not column.values:
        return False
    if column.distinct > 400 or column.unique >= 0.5 or _country_codes(column) is not None:
        return False
    if column.fit(r"[A-Za-z0-9][A-Za-z0-9_.-]{1,15}") < FITS or _date_formats(column) is not None:
        return False
    values = pd.Series(column.values)
    upper = values.str.upper()
    # country names are ISO's too (the mapping converts them): each distinct value read once
    distinct = values.drop_duplicates()
    names = distinct[distinct.map(plain_name).isin(name_to_alpha2())]
    iso = (
        upper.isin(ALPHA2)
        | upper.isin(ALPHA3_TO_ALPHA2)
        | upper.str.zfill(3).isin(NUMERIC_TO_ALPHA2)
        | values.isin(names)
    )
    return float(iso.mean()) < 0.5


@_memo
def _date_formats(column: Column) -> tuple[list[str] | None, list[str]] | None:
    """The formats that read (nearly) every value (None: ISO 8601, no format needed), and what
    to check; None when the column is not dates."""
    import pandas as pd

    if column.typed == "datetime":
        return None, []
    if column.typed == "number" or not column.values:
        return None
    shaped = r"[0-9][0-9./: TZ+年月日-]{5,}(?: ?[AaPp]\.?[Mm]\.?)?"
    named_month = (
        r"(?i)(?:\d{1,2}[- /])?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
        r"[- /,]+\d{1,4}[0-9 ,/:-]*(?: ?[ap]m)?"
    )
    if column.fit(shaped) < FITS and column.fit(named_month) < FITS:  # not date-shaped
        return None
    values = pd.Series(column.values)
    if values.str.fullmatch(r"\d{4}-\d{2}-\d{2}(?:[T ].*)?").mean() >= FITS:
        parsed = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
        if parsed.notna().mean() >= FITS:
            return None, []
    reads, parsed = {}, {}
    for fmt in _DATE_FORMATS:
        stamps = pd.to_datetime(values, format=fmt, errors="coerce")
        share = float(stamps.notna().mean())
        if share > 0:
            reads[fmt], parsed[fmt] = share, stamps
    if not reads:
        return None
    set_aside = _set_aside_two_digit_years(reads, parsed)
    reads = {fmt: share for fmt, share in reads.items() if fmt not in set_aside}
    # a format with a time and one without may each read part of the column (midnight written
    # as a bare date): together they must read it
    chosen: list[str] = []
    covered = pd.Series(False, index=values.index)
    for fmt in sorted(reads, key=lambda f: (-reads[f], _DATE_FORMATS.index(f))):
        hit = parsed[fmt].notna()
        if (hit & ~covered).any():
            chosen.append(fmt)
            covered |= hit
        if covered.mean() >= FITS:
            break
    if covered.mean() < FITS or len(chosen) > 3:
        return None
    checks = []
    if two_digit := next((f for f in chosen if "%y" in f), None):
        checks.append(_two_digit_years_read(parsed[two_digit]))
        checks += [
            f"every value also reads as {f}, set aside: {why}" for f, why in set_aside.items()
        ]
    if any(f.startswith("%d") for f in chosen):
        swapped = [f.replace("%d", "%_").replace("%m", "%d").replace("%_", "%m") for f in chosen]
        if all(reads.get(f, 0) >= reads[c] for f, c in zip(swapped, chosen, strict=True)):
            checks.append("day first guessed: every value also reads month first")
    return chosen, checks


def _now() -> pd.Timestamp:
    """The clock, naive as the dates a draft reads: a history's declarations are before it."""
    import pandas as pd

    return pd.Timestamp.now()


def _set_aside_two_digit_years(
    reads: dict[str, float], parsed: dict[str, pd.Series]
) -> dict[str, str]:
    """The two-digit-year readings to drop, each with why, when several read every value:
    one putting dates in the future where another does not (a history's declarations are not
    ahead of the clock), then the one spanning more days (13-01-02 .. 13-12-31 is 2013 day by
    day as %y-%m-%d, the 13th of a month of 2001-2031 as %d-%m-%y), then the one listed later."""
    import pandas as pd

    best = max(reads.values())
    tied = [f for f, share in reads.items() if "%y" in f and share >= max(best - 1e-9, FITS)]
    if len(tied) < 2:
        return {}
    latest = _now() + pd.Timedelta(days=1)
    ahead = {f: bool((parsed[f] > latest).any()) for f in tied}
    span = {f: parsed[f].max() - parsed[f].min() for f in tied}
    kept = min(tied, key=lambda f: (ahead[f], span[f], _DATE_FORMATS.index(f)))
    why = {}
    for fmt in tied:
        if fmt == kept:
            continue
        if ahead[fmt] and not ahead[kept]:
            why[fmt] = f"it puts dates in the future (up to {parsed[fmt].max():%Y-%m-%d})"
        elif span[fmt] > span[kept]:
            why[fmt] = (
                f"its dates span {span[fmt].days:,} days, {kept}'s {span[kept].days:,} "
                f"({parsed[kept].min():%Y-%m-%d} to {parsed[kept].max():%Y-%m-%d})"
            )
        else:
            why[fmt] = f"no more days than {kept}: the first listed was guessed"
    return why


def _two_digit_years_read(stamps: pd.Series) -> str:
    """How a reading put two-digit years in centuries (as POSIX does: 69-99 are 19YY, 00-68
    are 20YY), with an example of each."""
    years = stamps.dropna().dt.year
    old, new = years[years < 2000], years[years >= 2000]
    said = ", ".join(f"{y.iloc[0] % 100:02d} -> {y.iloc[0]}" for y in (old, new) if len(y))
    if len(old) and len(new):
        return f"two-digit years 69-99 read as 19YY, 00-68 as 20YY: {said}"
    return f"two-digit years read as {'19' if len(old) else '20'}YY: {said}"


@_memo
def _number_style(column: Column) -> tuple[str, str | None, list[str]] | None:
    """(decimal, thousands, units in the cells) of a column of numbers; None if not numbers."""
    if column.typed == "number":
        return ".", None, []
    if column.typed == "datetime" or not column.values:
        return None
    best = None
    for (decimal, thousands), pattern in _NUMBER_STYLES.items():
        share = column.fit(f"{pattern}(?:{_UNIT})?")
        if best is None or share > best[0] + 1e-9:
            best = (share, decimal, thousands)
    assert best is not None
    share, decimal, thousands = best
    if share < FITS:
        return None
    units = sorted({m.group(1).lower() for v in column.values if (m := re.search(_UNIT + "$", v))})
    return decimal, thousands, units


def _currency_named(column: Column) -> str | None:
    """The currency a column's name gives its amounts in (``Value (USD)``, ``Wert €``), or
    None: one ISO 4217 code among its words, or one sign of a single currency."""
    codes = {
        w.upper()
        for w in column.words.split()
        if w.upper() in ISO_4217 and w not in _CODE_WORDS_NOT_CURRENCY
    }
    signs = {
        code
        for sign, code in _CURRENCY_SIGNS.items()
        if not sign.isalpha() and sign in column.name.lower()
    }
    found = codes | signs
    return found.pop() if len(found) == 1 else None


def _currency_code(sign: str) -> str | None:
    """The ISO 4217 code a cell's currency sign or code names, or None."""
    code = sign.strip().upper()
    return code if code in ISO_4217 else _CURRENCY_SIGNS.get(sign.strip().lower())


@_memo
def _money(column: Column) -> tuple[str, str | None, dict[str, str], list[str]] | None:
    """A column of amounts written with their currency (``US$ 12.50``, ``12,50 €``,
    ``EUR 7``): (decimal, thousands, sign -> ISO code for the signs that are not codes, signs
    not read); None if it is not one. Read with ``part: number`` and ``part: unit``."""
    import pandas as pd

    from features.intake.mapping import NUMBER_WITH_UNIT

    if column.typed != "text" or not column.values or _date_formats(column) is not None:
        return None
    parts = pd.Series(column.values).str.extract(NUMBER_WITH_UNIT)
    before, after = parts["before"].fillna("").str.strip(), parts["after"].fillna("").str.strip()
    one_side = parts["number"].notna() & (before.eq("") ^ after.eq(""))
    if one_side.mean() < FITS:
        return None
    signs = before.where(before.ne(""), after)[one_side]
    distinct = sorted(set(signs))
    if len(distinct) > 60:
        return None
    # a sign several currencies write ($: USD, CAD, AUD...) is the one the column's name
    # gives ("Declared Value (USD)" holding "$1,234.56": a US export, probe 2026-12)
    named = _currency_named(column)
    read = {sign: _currency_code(sign) or named for sign in distinct}
    known = signs.map(lambda sign: read[sign] is not None).mean()
    if known < 0.5:  # units of weight, not currencies
        return None
    numbers = parts["number"][one_side].str.replace("\u00a0", " ")
    table = {sign: code for sign, code in read.items() if code is not None and code != sign}
    unread = [sign for sign, code in read.items() if code is None]
    # each currency's own convention in one column (a marketplace's "€22,77" beside
    # "$63.62"): a decimal comma and a decimal point each before two digits
    comma = float(numbers.str.fullmatch(r"-?[\d .]*\d,\d{2}").mean())
    point = float(numbers.str.fullmatch(r"-?[\d ,]*\d\.\d{2}").mean())
    if comma >= 0.05 and point >= 0.05:
        return "auto", None, table, unread
    best = (0.0, ".", None)
    for (decimal, thousands), pattern in _NUMBER_STYLES.items():
        share = float(numbers.str.fullmatch(pattern).mean())
        if share > best[0] + 1e-9:
            best = (share, decimal, thousands)
    if best[0] < FITS:
        return None
    return best[1], best[2], table, unread


def _codes(column: Column, name: str) -> tuple[dict[str, str], list[str], list[str]]:
    """A values table for a coded field: (code -> contract value, codes not read, checks)."""
    allowed = FIELDS_BY_NAME[name].allowed or ()
    words = _CODE_WORDS.get(name, {})
    table, unread, checks = {}, [], []
    initials: dict[str, list[str]] = {}
    for value in allowed:
        initials.setdefault(value[0], []).append(value)
    guessed = []
    if name == "channel" and column.fit(r"\d") == 1.0:
        for code in sorted(set(column.values)):
            if code in _UN_TRANSPORT_MODES:
                table[code] = _UN_TRANSPORT_MODES[code]
            else:
                unread.append(code)
        checks.append("read as UN/ECE Recommendation 19 transport modes (5 = postal, 4 = air)")
        return table, unread, checks
    for code in sorted(set(column.values)):
        plain = _plain(code)
        if plain.replace(" ", "_") in allowed:
            table[code] = plain.replace(" ", "_")
        elif plain in words:
            table[code] = words[plain]
        elif len(plain) <= 2 and len(initials.get(plain[:1], [])) == 1 and plain.isalpha():
            table[code] = initials[plain[:1]][0]
            guessed.append(code)
        else:
            unread.append(code)
    if guessed:
        checks.append(f"read from initials: {', '.join(f'{c}={table[c]}' for c in guessed)}")
    return table, unread, checks


# Fields the draft takes by their names, as their values say little (an office's code, a party's
# id, a region, the goods' text): a column of units is never one of them
_NAMED_ONLY_FIELDS = ("declaration_id", "arrival_office", *_PARTY_IDS, "consignee_region",
                      "description")  # fmt: skip
# Words of a name saying its column holds units of measure ("Unidade", "Weight unit", "UoM")
_UNIT_WORDS = frozenset({
    "unit", "units", "uom", "unid", "unidade", "unidades", "unidad", "unite", "unites",
    "einheit", "masseinheit", "unita", "eenheid", "jednostka", "birim",
})  # fmt: skip


@_memo
def _unit_tokens(column: Column) -> str | None:
    """``weight`` when every value is a unit of weight (g, kg, KG, lb), ``currency`` when
    (nearly) every value is a currency's code or sign (EUR, usd, €); None otherwise. Such a
    column says what the number beside it is counted in, never who or where: "Unidade" (g,
    kg, KG) was drafted as the arrival office by its name, its grams read as kilograms (probe
    27)."""
    if column.typed != "text" or not column.values:
        return None
    if column.fit(r"[A-Za-z]{1,6}") >= FITS and all(
        v.lower() in _WEIGHT_UNITS for v in set(column.values)
    ):
        return "weight"
    if column.distinct <= 60 and sum(
        _currency_code(v) is not None for v in column.values
    ) >= FITS * len(column.values):
        return "currency"
    return None


def _holds_weight_units(column: Column) -> bool:
    """A weight's unit column, whatever its name: units of weight, two or more of them or
    under a name saying units (one value alone, a "G" under "Tipo", may be a code: gift)."""
    return _unit_tokens(column) == "weight" and (
        column.distinct > 1 or bool(_said(column, _UNIT_WORDS))
    )


@_memo
def _weight_units_in_cells(column: Column) -> dict[str, float] | None:
    """The ``units`` table (unit -> kg) of a column of weights written with their unit
    (``250 g``, ``1,79 kg``): nearly every cell a number followed by a unit of weight. None
    otherwise (bare numbers, or a unit that weighs nothing: 3 pcs, 12 EUR)."""
    style = _number_style(column)
    if style is None or not style[2] or not set(style[2]) <= _WEIGHT_UNITS.keys():
        return None
    decimal, thousands, units = style
    # the unit is optional in a number style: here (nearly) every cell must say it
    if column.fit(f"{_NUMBER_STYLES[(decimal, thousands)]}{_UNIT}") < FITS:
        return None
    return {unit: _WEIGHT_UNITS[unit] for unit in units}


# --- the draft ---------------------------------------------------------------------------------


def _candidates(
    columns: list[Column], fields: list[str] = _FIELD_ORDER
) -> list[tuple[float, str, Column]]:
    """(score, field, column) for every pair whose values fit one of ``fields``."""
    out = []
    for column in columns:
        if column.filled == 0:
            continue
        dates = _date_formats(column)
        number = _number_style(column)
        flags = _flag_values(column)
        country = _country_codes(column)
        currency = _is_currency(column)
        hs = _hs_fit(column)
        if _holds_weight_units(column):
            continue  # no field's: read with the weight it gives the unit of (_weight_unit_column)
        names = {name: _name_score(column, name) for name in _FIELD_ORDER}
        if _unit_tokens(column) is not None:
            # its name may say office ("Unidade") or party, its values say a unit: they win,
            # and a currency's codes under such a name are the currency by their values
            names.update(dict.fromkeys(_NAMED_ONLY_FIELDS, 0.0))
        if names["description"] and _category_words(column):
            # a CN22/CN23 category of item (Gift, Sale of goods; Geschenk, Warenverkauf) under
            # a name saying contents ("Nature of contents", "Inhalt") was drafted as the goods'
            # description, its text a categorical extra (probe 39): the values say category
            names["category"] = max(names["category"], names["description"])
            names["description"] = 0.0
        # a column its name gives to a field is no other field's by its values alone: a
        # consignee's code of 7 digits is not an HS code, a currency's ISO numbers (643, 840)
        # are not countries
        named_otherwise = max(names.values(), default=0.0) >= 0.6
        for name in fields:
            named = names[name]
            if not named and named_otherwise:
                continue
            fits = _fits(name, column, dates, number, flags, country, currency, hs, named)
            if fits > 0:
                tie = _id_over_name(column, name) if named else 0.0
                out.append((2 * named + fits + tie, name, column))
    return sorted(out, key=lambda c: (-c[0], _FIELD_ORDER.index(c[1])))


def _id_over_name(column: Column, name: str) -> float:
    """A tie-break for a party's identifier: RECIPIENT_ID before RECIPIENT_NAME, which both
    name the recipient and fit by their values; the first in the file was taken, the name
    then keyed (folded) as the id and the id left a personal extra. A name is the id only
    where no code is given (a seller known by its shop's name)."""
    if name not in _PARTY_IDS:
        return 0.0
    if _said(column, _IDENTIFIER_WORDS):
        return 0.01
    return -0.01 if _said(column, _NAME_WORDS) else 0.0


# The colours of selectivity lanes (green/yellow/red/grey), in the languages above: a column
# of them is the lane a declaration was sent to, which says whether it was inspected, never
# how it travelled (Brazil's "Canal": Verde, Vermelho).
_LANE_COLOURS = frozenset({
    "green", "yellow", "orange", "red", "grey", "gray", "blue", "vert", "jaune", "rouge", "gris",
    "bleu", "verde", "amarelo", "vermelho", "cinza", "amarillo", "rojo", "gruen", "grun", "gelb",
    "rot", "giallo", "rosso", "grigio", "zielony", "zolty", "czerwony", "yesil", "sari",
    "kirmizi", "mavi", "зеленый", "желтый", "красный", "绿", "黄", "红", "绿色", "黄色", "红色",
})  # fmt: skip


def _lane_colours(column: Column) -> bool:
    """Whether (nearly) every value names a lane's colour (``Canal verde``, ``RED``): a few
    distinct values, each read once."""
    if not column.values or not 1 <= column.distinct <= 8:
        return False
    coloured = {v for v in set(column.values) if set(_plain(v).split()) & _LANE_COLOURS}
    return sum(v in coloured for v in column.values) >= FITS * len(column.values)


@_memo
def _category_words(column: Column) -> bool:
    """Whether (nearly) every value is a word of the category table (``Gift``, ``Sale of
    goods``, ``Dokumente``, ``其他``), two kinds of it at least: a category of item, never the
    goods' text (a few senders write "gift" there; nearly all write goods)."""
    if column.typed != "text" or not 2 <= column.distinct <= _CATEGORIES_AT_MOST:
        return False
    words = _CODE_WORDS["category"]
    read = {v for v in set(column.values) if _plain(v) in words}
    return sum(v in read for v in column.values) >= FITS * len(column.values)


def _fits(
    name: str,
    column: Column,
    dates: Any,
    number: Any,
    flags: Any,
    country: str | None,
    currency: bool,
    hs: float,
    named: float,
) -> float:
    """How much the values say the column is ``name`` (0: they say it is not)."""
    kind = FIELDS_BY_NAME[name].kind
    if name == "hs_code":
        return hs
    if name in ("origin_country", "seller_country"):
        if country:
            # with no name for it, a country column is the goods' origin, not the seller's
            return 1.0 if named or name == "origin_country" else 0.0
        # an export's own codes (CNTRY376) are a country's only where the name says so: the
        # seller's where it names the seller's, else the origin's (plain "country" too)
        says = named or (name == "origin_country" and _names_country(column))
        return 0.5 if says and _own_country_codes(column) else 0.0
    if name == "currency":
        return 1.0 if currency else 0.0
    if kind == "datetime":
        if name == "declared_at" and column.filled < FITS:
            return 0.0  # every declaration was lodged: a date with blanks is a result's
        readable = dates is not None or _epoch_format(column) or _excel_serials(column)
        return 0.5 if readable and named else 0.0
    if kind == "bool":
        if name == "inspected" and column.filled < FITS:
            return 0.0  # every parcel was inspected or not: a column with blanks holds results
        if flags is None and name == "illicit" and named and _result_codes(column):
            return 0.4  # a finding's codes, some of which the person must place
        return 0.5 if flags is not None and named else 0.0
    if name == "declared_value" and _money(column) is not None:
        return 0.5 if named else 0.2  # an amount beside its currency is a value
    if name in ("quantity", "gross_weight_kg", "declared_value", "revenue_recovered"):
        return 0.5 if number is not None and named else 0.0
    if name == "selection_reason" and not named:
        # SELECTED_BY holding random / rule:PROFILE_1 was listed as not mapped (probe 38):
        # the contract's own words say the reason whatever the name
        return 0.3 if _selection_reasons(column) else 0.0
    if kind == "category" or name == "selection_reason":
        if not named or column.distinct > 50:
            return 0.0
        if name == "channel" and _lane_colours(column):
            return 0.0  # Brazil's "Canal" Verde/Vermelho: the selection lane, no transport
        # names shared by two code fields (Type infraction: a type, an offence) are told
        # apart by which one's words read the codes
        table, unread, _ = _codes(column, name)
        return 0.3 + 0.3 * len(table) / max(1, len(table) + len(unread))
    if name == "declaration_id":
        # fewer than one distinct value in a hundred rows is no declaration's id, even one per
        # goods item: a line number (ITEM_NO: 1, 2, 3) read as "91,405 rows for 3
        # declarations" (probe 11)
        if named >= 0.6 and column.filled >= FITS and not dates and column.unique >= 0.01:
            return 1.0 if column.unique >= 0.99 else 0.2
        return 0.0
    if name == "description":
        long_text = sum(len(v) for v in column.values) / max(1, len(column.values)) >= 8
        return 0.5 if (named >= 0.8 or (named and long_text)) and number is None else 0.0
    # the other identifiers and texts: by name only (digits that could be HS codes too: a
    # consignee's code 0000282, an exporter's 20260054 are the party's codes)
    return 0.3 if named >= 0.6 and dates is None and not country else 0.0


# A selection by a rule or profile as the contract writes it (rule:PROFILE_12), and as exports
# do (profile:P7, rule: R12)
_RULE_SELECTION = r"[^\W\d_][\w .-]{0,30}:\s*\S.*"


def _selection_reasons(column: Column) -> bool:
    """Whether the values are selection reasons as the contract writes them: the exploration
    quota's ``random`` (or its words: aleatoire, zufall) on some rows, ``rule:<name>`` on the
    others."""
    if not column.values or column.distinct > 50:
        return False
    random = _CODE_WORDS["selection_reason"]
    read = [_plain(v) in random for v in column.values]
    if not any(read):
        return False
    rules = [bool(re.fullmatch(_RULE_SELECTION, v)) for v in column.values]
    return sum(r or q for r, q in zip(read, rules, strict=True)) >= FITS * len(column.values)


def _timezone_spec(spec: dict, timezone: str, checks: list[str], values: list[str]) -> None:
    """A zone for times written without one: the administration's, said to be checked."""
    zoned = sum(bool(re.search(r"(?:Z|[+-]\d{2}:?\d{2})$", v)) for v in values)
    if values and zoned / len(values) >= FITS:
        return
    spec["timezone"] = timezone
    checks.append(f"local times read in {timezone} (features.timezone): the export's own zone?")


_NAME_WORDS = frozenset({"name", "nom", "nombre", "nome", "naam", "firma", "razao", "ad",
                         *_vocabulary("ชื่อ", "名称", "姓名", "名前", "이름", "성명")})  # fmt: skip


def _is_a_name(column: Column) -> bool:
    """A column of names (by its name, and its values: text with letters, not codes)."""
    return bool(_said(column, _NAME_WORDS)) and column.fit(r".*[^\W\d_].*") >= FITS


def _propose(name: str, column: Column, timezone: str, unit: Column | None = None) -> Proposal:
    """The spec of ``name`` read from ``column`` (``unit``: the column giving each weight's
    unit, ``_weight_unit_column``)."""
    kind = FIELDS_BY_NAME[name].kind
    spec: dict[str, Any] = {"column": column.name}
    checks: list[str] = []
    if kind == "datetime" and _date_formats(column) is None and _epoch_format(column):
        spec["format"] = _epoch_format(column)
        checks.append("Unix times (UTC) guessed from numbers of 10 or 13 digits")
    elif kind == "datetime" and _date_formats(column) is None and _excel_serials(column):
        spec["format"] = "excel"
        spec["timezone"] = timezone
        checks.append(f"spreadsheet serial days read as dates, local to {timezone}")
    elif kind == "datetime":
        formats, date_checks = _date_formats(column) or (None, [])
        if formats:
            spec["format"] = formats[0] if len(formats) == 1 else formats
        checks += date_checks
        if formats and column.typed != "datetime" and _buddhist_era(column):
            spec["calendar"] = "buddhist"
            checks.append("years of the Buddhist era (2569 is 2026): read 543 years earlier")
        elif column.typed != "datetime" and (calendar := _hijri_era(column)):
            spec["calendar"] = calendar
            checks.append(_HIJRI_CHECKS[calendar])
        if column.typed != "datetime":
            _timezone_spec(spec, timezone, checks, column.values)
        else:
            spec["timezone"] = timezone
            checks.append(f"spreadsheet times read in {timezone} (features.timezone)")
        if name == "inspected_at" and _dates_only(column, formats):
            spec["offset"] = "1 day"
            checks.append(_END_OF_DAY)
    elif kind == "bool":
        yes, no = _flag_values(column) or ([], [])
        codes = None if yes or no else _result_codes(column)
        if codes:
            yes, no, unknown = codes
            checks.append(
                f"{', '.join(unknown)}: neither a yes- nor a no-word; add each to true_values "
                "(the inspection found something) or false_values (it found nothing): ingest "
                "refuses their rows until then"
            )
        if yes:
            spec["true_values"] = yes
        if no:
            spec["false_values"] = no
        if not (yes and no):
            checks.append("only one of yes/no seen in the sample")
    elif name == "currency":
        spec, checks = _currency_spec(column.name, column.values, part=False)
    elif name in ("origin_country", "seller_country"):
        codes = _country_codes(column)
        if codes and codes != "alpha2":
            spec["country_codes"] = codes
        elif codes is None and _own_country_codes(column):
            checks.append(
                f"codes that are not ISO 3166 (e.g. {column.values[0]!r}): read as the export's "
                "own country codes, each a country of its own; a values table can name the ISO "
                "code of each"
            )
    elif name in _PARTY_IDS and _is_a_name(column):
        # a name for the id (a postal export's sender): its spellings are one party
        spec["fold"] = True
        checks.append(
            "a name as the id: read whatever its case and spacing (fold), so that 'Yiwu Co., "
            "Ltd' and 'YIWU CO.,LTD' are one party"
        )
    elif name == "hs_code":
        # codes stored as numbers get their zero back by themselves; text says nothing
        if column.typed == "text" and column.fit(r"\d{5}|\d{7}|\d{9}") > 0:
            if short := _zero_lost(column):
                spec["lost_leading_zero"] = True
                checks.append(
                    f"codes of {short} digits beside {short + 1}: written as numbers, they lost "
                    "the zero of chapters 01-09 (901210000 -> 0901210000), given back"
                )
            else:
                checks.append(
                    "some codes have 5, 7 or 9 digits: if the export wrote them as numbers, add "
                    "lost_leading_zero: true"
                )
    elif name == "declared_value" and _money(column) is not None:
        decimal, thousands, _, _ = _money(column)
        spec["part"] = "number"
        if decimal != ".":
            spec["decimal"] = decimal
        if thousands:
            spec["thousands"] = thousands
        if decimal == "auto":
            checks.append(
                "amounts written with a decimal comma and with a decimal point, each cell as "
                "its currency writes it: decimal: auto reads each cell's own (a cell such as "
                "12,500, one mark before three digits, is refused as undecidable)"
            )
    elif kind in ("float", "int"):
        decimal, thousands, units = _number_style(column) or (".", None, [])
        if decimal != ".":
            spec["decimal"] = decimal
        if thousands:
            spec["thousands"] = thousands
        if name == "gross_weight_kg":
            if units:
                known = {u: _WEIGHT_UNITS[u] for u in units if u in _WEIGHT_UNITS}
                spec["units"] = known
                unknown = [u for u in units if u not in _WEIGHT_UNITS]
                if unknown:
                    checks.append(f"units not known: {', '.join(unknown)} (add them to units)")
            elif unit is not None:
                # before any unit the name or the numbers suggest: each row says its own
                written = sorted({v.strip() for v in unit.values})
                rest = {k: v for k, v in spec.items() if k != "column"}
                # one key per unit: the mapping reads units whatever their case and refuses
                # keys that tie (KG, Kg, kg: the draft did not parse), so as written when
                # written one way, in lowercase when several
                forms: dict[str, list[str]] = {}
                for u in written:
                    forms.setdefault(u.lower(), []).append(u)
                units_read = {
                    (spelt[0] if len(spelt) == 1 else key): _WEIGHT_UNITS[key]
                    for key, spelt in sorted(forms.items())
                }
                spec = {"columns": [column.name, unit.name], **rest, "units": units_read}
                checks.append(
                    f"the unit of each weight read from {unit.name} ({', '.join(written)})"
                )
            elif named := next((u for u in _UNIT_NAMES if u in column.words.split()), None):
                spec["scale"] = _UNIT_NAMES[named]
                checks.append(f"{named} read from the name: scale {_UNIT_NAMES[named]} to kg")
            elif any(f" {g} " in f" {column.words} " for g in _GRAM_NAMES):
                spec["scale"] = 0.001
                checks.append("grams guessed (the name): scale 0.001 to kg")
            elif grams := _grams_by_values(column):
                spec["scale"] = 0.001
                checks.append(f"grams guessed ({grams}): scale 0.001 to kg")
        if name == "declared_value" and _said(column, _PER_UNIT_WORDS):
            # a marketplace line's "Unit Price" beside its "Qty" was drafted unmarked: a line
            # of 12 entered at a twelfth of its value (probe)
            checks.append(
                "the name says a price per unit: the contract wants the parcel's whole value "
                "(price x quantity); map a total column if the export has one"
            )
        if name in ("declared_value", "revenue_recovered") and any(
            f" {m} " in f" {column.words} " for m in _MINOR_UNIT_NAMES
        ):
            spec["scale"] = 0.01
            checks.append("amounts in cents read from the name: scale 0.01")
        if name == "revenue_recovered" and (code := _currency_named(column)) is not None:
            spec["currency"] = code
            checks.append(f"in {code}, read from the name")
        elif name == "revenue_recovered":
            checks.append("in which currency? add currency: EUR (or its ISO code, or row)")
    elif kind == "category" or name == "selection_reason":
        table, unread, code_checks = _codes(column, name)
        checks += code_checks
        if table and any(code != value for code, value in table.items()):
            spec["values"] = table
        if name == "selection_reason":
            if "values" in spec:  # without a table a mapping refuses it (read as written)
                spec["unlisted"] = "keep"
        elif unread:
            checks.append(
                f"codes not read: {', '.join(unread[:8])}: map them in values (ingest refuses "
                "rows holding them)"
            )
            if table:
                spec["values"] = table
        if none := [code for code, value in table.items() if value is None]:
            checks.append(
                f"{', '.join(none[:8])}: no category of the contract's, read as none declared "
                "(null); map it to one if you know which"
            )
    if len(spec) == 1:
        return Proposal(column.name, checks, column.name)
    return Proposal(spec, checks, column.name)


# A result dated without a time may be known only at the end of its day: read at midnight it
# would precede the same day's declarations (the gate refuses it) and feed their features.
_END_OF_DAY = "dates without a time: a result counts from the next day on (offset 1 day)"


def _buddhist_era(column: Column) -> bool:
    """Dates whose years are of the Buddhist era (a Thai export: 2569 for 2026): nearly every
    value's four-digit year lies in 2400-2799, centuries past any declaration."""
    import pandas as pd

    years = pd.Series(column.values).str.extract(r"(?<![0-9])([0-9]{4})(?![0-9])")[0]
    years = pd.to_numeric(years, errors="coerce")
    return bool(years.between(2400, 2799).mean() >= FITS)


_HIJRI_CHECKS = {
    "hijri": "years of the Hijri calendar (1447 is 2025/26): read as Umm al-Qura dates; "
    "Solar Hijri (Iranian) dates need calendar: jalali",
    "jalali": "years of the Solar Hijri calendar (1404 is 2025/26): read as Jalali dates; "
    "lunar Hijri dates need calendar: hijri",
}


def _hijri_era(column: Column) -> str | None:
    """``hijri`` or ``jalali`` for dates whose years are of the Hijri calendars: nearly every
    value's four-digit year in 1300-1499. Which one by the years of recent decades: the lunar
    calendar is at 1420 from 1999 on, the solar one not before 2041."""
    import pandas as pd

    years = pd.Series(column.values).str.extract(r"(?<![0-9])([0-9]{4})(?![0-9])")[0]
    years = pd.to_numeric(years, errors="coerce")
    if not years.between(1300, 1499).mean() >= FITS:
        return None
    return "hijri" if years.median() >= 1420 else "jalali"


def _dates_only(column: Column, formats: list[str] | None) -> bool:
    """Whether a date column holds days without a time of day."""
    if column.typed == "datetime" or not column.values:
        return False
    if formats:
        return not any("%H" in f or "%I" in f for f in formats)
    return column.fit(r"\d{4}-\d{2}-\d{2}") >= FITS


def _epoch_format(column: Column) -> str | None:
    """``epoch_s`` or ``epoch_ms`` for a column of Unix times from 1990 to 2100 (10 or 13
    digits), asked only of a column whose name says it holds dates."""
    for fmt, digits in (("epoch_s", 10), ("epoch_ms", 13)):
        if column.fit(rf"\d{{{digits}}}(?:\.0+)?") >= FITS:
            numbers = _numbers(column)
            scale = 1 if fmt == "epoch_s" else 1000
            if (
                len(numbers)
                and numbers.between(631_152_000 * scale, 4_102_444_800 * scale).mean() >= FITS
            ):
                return fmt
    return None


def _excel_serials(column: Column) -> bool:
    """Numbers that are a spreadsheet's serial days of the years 1955-2119 (46023.5 is
    2026-01-01 12:00): asked only of a column whose name says it holds dates."""
    if _number_style(column) is None or not column.values:
        return False
    low, high = _number_range(column)
    return low >= 20_000 and high <= 80_000


def _number_range(column: Column) -> tuple[float, float]:
    numbers = _numbers(column)
    return (float(numbers.min()), float(numbers.max())) if len(numbers) else (0.0, 0.0)


def _numbers(column: Column) -> pd.Series:
    """The column's values as numbers, read in its number style (units dropped)."""
    import pandas as pd

    decimal, thousands, _ = _number_style(column) or (".", None, [])
    text = pd.Series(column.values).str.replace(r"[A-Za-z\s]+$", "", regex=True)
    if thousands:
        text = text.str.replace(thousands, "", regex=False)
    if decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    return pd.to_numeric(text, errors="coerce").dropna()


def _grams_by_values(column: Column) -> str | None:
    """Why a weight column's numbers look like grams (None: like kilograms): a median above 50
    (a parcel of 50 kg is rare) in whole numbers, as scales in grams write them, or a median
    above 2000 however written. Kilograms carry decimals: a bulk cargo's 55.31 kg, read as
    grams, was 1000x too light (probe, DATE's layout)."""
    numbers = _numbers(column)
    if numbers.empty:
        return None
    median = float(numbers.median())
    if median > 2000:
        return f"a median weight of {median:,.0f}"
    whole = float((numbers % 1 == 0).mean())
    if median > 50 and whole >= 0.9:
        return f"a median weight of {median:,.0f}, in whole numbers"
    return None


# Distinct values a text column left over may have to be drafted a categorical extra (more: an
# entity, which gets history features)
_CATEGORIES_AT_MOST = 50


def _extra(
    column: Column, position: int, taken: set[str], currency: Proposal | None = None
) -> tuple[dict, str] | None:
    """An extras entry for a column left over (``position``: its place in the file, 1 first,
    names one whose name has no Latin letters), or None (why: ``_why_ignored``), with its kind
    (``personal phone``: a person's, what of them). ``currency``: the rows' currency as drafted,
    so a numeric extra named for an amount is one in it (None: not known)."""
    if _why_ignored(column):
        return None
    base = re.sub(r"[^0-9a-z]+", "_", column.words).strip("_")[:40]
    if not base or not base[0].isalpha() or not re.search(r"[a-z]{2}", base):
        base = f"column_{position}"
    name, k = base, 2
    from features.intake.mapping import DERIVED_COLUMNS

    while name in taken or name in FIELDS_BY_NAME or name in DERIVED_COLUMNS:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    # a person's before anything: postcodes and phones read as numbers were model inputs
    what = _personal_particular(column)
    if what is not None:
        # held only as a keyed pseudonym, as consignee_id is: an entity whatever its count
        entry: dict[str, Any] = {
            "column": column.name,
            "name": name,
            "kind": "entity",
            "personal": True,
        }
        if _is_a_name(column) or "name" in what:  # one person whatever the case
            entry["fold"] = True
        return entry, f"personal {what}"
    number = _number_style(column)
    # codes written with digits keep their leading zeros ("08714"): identifiers, not amounts;
    # so are numbers a name calls a code, a number or a party's (an exporter's 20260054 read
    # as a magnitude would be a model input in which sellers are near or far)
    # as are numbers of 13 digits or more, whatever the name: a Thai national id, an EAN-13
    coded = (
        column.fit(r"0\d+") > 0
        or bool(_said(column, _IDENTIFIER_WORDS) or _said(column, _PARTY_WORDS))
        or column.fit(_LONG_NUMBER) >= FITS
    )
    # weights written with their unit beside the one mapped (a net mass beside the gross) are
    # weights too, read in kg: as an entity, each weight was a "party" with a history (probe 33)
    weights = _weight_units_in_cells(column)
    magnitudes = number is not None and column.distinct > 20 and not number[2]
    if (magnitudes or weights) and number is not None and not coded:
        entry = {"column": column.name, "name": name, "kind": "numeric"}
        if number[0] != ".":
            entry["decimal"] = number[0]
        if number[1]:
            entry["thousands"] = number[1]
        if weights:
            entry["units"] = weights
        # converted to the base currency as declared_value is (NGN beside USD on one scale),
        # unless its name gives it a currency of its own ("Freight (USD)" beside rows in EUR)
        if _names_amount(column):
            if currency is None:
                # the currency is a TODO: the amounts are most likely in the one a person
                # writes there (DATE's cif.value and total.taxes beside USD values); left
                # plain, they lost their conversion and their share of the value (probe 9)
                if _currency_named(column) is None:
                    entry["amount"] = True
                    return entry, "amount to check"
                return entry, "numeric"
            constant = currency.spec.get("value") if isinstance(currency.spec, dict) else None
            if _currency_named(column) in (None, constant):
                entry["amount"] = True
        return entry, "numeric"
    # a party named as such is an entity whatever its count in the sample (a broker's record
    # of results is the signal, not its code): 40 brokers are not 40 categories
    # ("Supplier Country" is where a party is, a place: not the party, probe)
    party = bool(_said(column, _PARTY_WORDS)) and not _said(column, _PLACE_WORDS)
    if column.distinct <= _CATEGORIES_AT_MOST and not party:
        return {"column": column.name, "name": name, "kind": "categorical"}, "categorical"
    return {"column": column.name, "name": name, "kind": "entity"}, "entity"


# Words of a name saying its numbers are money (a value, a tax, a charge), and words saying
# they are a rate of it (a duty rate is no amount)
_AMOUNT_WORDS = _DELIVERY_TERMS | frozenset({
    "value", "valeur", "valor", "wert", "valore", "waarde", "amount", "montant", "betrag",
    "importe", "price", "prix", "precio", "preco", "tax", "taxes", "duty", "duties", "droits",
    "derechos", "tributo", "tributos", "abgaben", "zoll", "cost", "costs", "freight", "fret",
    "flete", "frete", "insurance", "assurance", "seguro", "fee", "fees", "charge", "charges",
    *_vocabulary("มูลค่า", "ราคา", "ภาษี", "อากร", "ค่าขนส่ง", "金额", "价格", "价值",
                          "税额", "运费", "保费", "価格", "価額", "금액", "가격", "세액"),
})  # fmt: skip
_RATE_WORDS = frozenset({"rate", "rates", "pct", "percent", "percentage", "ratio", "share",
                         "taux", "tasa", "taxa", "satz", "aliquota", "alicuota",
                         *_vocabulary("อัตรา", "税率", "세율")})  # fmt: skip


def _names_amount(column: Column) -> bool:
    return bool(_said(column, _AMOUNT_WORDS)) and not _said(column, _RATE_WORDS)


# Words of a name saying its numbers are codes, not amounts
_IDENTIFIER_WORDS = frozenset({
    "code", "codigo", "codice", "kod", "kode", "no", "nr", "num", "number", "numero", "nummer",
    "ref", "reference", "id", "ident", "identifier", "registration", "licence", "license",
    *_vocabulary("เลข", "รหัส", "编号", "号码", "代码", "编码", "番号", "コード", "번호",
                          "부호", "코드"),
})  # fmt: skip
# Whole numbers of 13 digits or more (a Thai national id, an EAN-13): codes, never magnitudes
_LONG_NUMBER = r"\d{13,}"

# Words of a name saying a column identifies a private person: the consignee (buyer, recipient)
# with one of their particulars, or a particular that only people have. Such an extra is drafted
# ``personal: true``, so uncommented no file, snapshot, log or stored decision holds its raw
# value; and commented out (data minimisation: the consignee is already one pseudonymised
# input), so it is read only when someone opts in (probe 18).
_PERSON_PARTIES = frozenset(SYNONYMS["consignee_id"]) | {
    "customer", "client", "cliente", "kunde", "receiver", "addressee", "destinataire",
    "person", "persona", "pessoa", "individual", "private", "shopper", "user",
}  # fmt: skip
_PARTICULARS = frozenset({
    "name", "nom", "nombre", "nome", "vorname", "nachname", "surname", "imie", "nazwisko",
    "ad", "soyad", "address", "adresse", "direccion", "endereco", "indirizzo", "adres",
    # a postal export's abbreviations (ADDRESSEE_ADDR kept home addresses in clear, probe 11)
    "addr", "adr", "street", "strasse", "rue", "calle", "rua", "ulica", "city", "town",
    "house", "apartment", "apt", "line1", "line2", "zipcode", "postal",
    "postcode", "zip", "plz", "cep", "phone", "telephone", "tel", "mobile", "telefono",
    "telefone", "telefon", "email", "mail", "id", "tax", "nif", "vat", "passport",
    "document", "documento", "birth", "dob", "code", "number", "no", "nr", "num", "ref",
    *_UNSPACED_ADDRESSES,
    *_vocabulary("ชื่อ", "เลข", "รหัส", "โทรศัพท์", "เบอร์", "姓名", "名称", "电话", "手机",
                          "证件", "号码", "编号", "代码", "名前", "番号", "이름", "성명", "전화",
                          "번호"),
})  # fmt: skip
# Particulars a name says without a party word (words or phrases as ``_plain`` writes them),
# by what they are: a French export's PORTABLE, NOM, RUE and CODE_POSTAL went in raw, as
# model inputs, when only a party word with one of them was read as a person's (probe 18)
_PERSONAL_PARTICULARS: dict[str, frozenset[str]] = {
    "phone": frozenset({
        "phone", "telephone", "tel", "telefon", "telefono", "telefone", "telefoon", "mobile",
        "mobil", "portable", "gsm", "cell", "cellphone", "cellular", "celular", "cellulare",
        "handy", "movil", "fax", "telefax", "whatsapp",
        *_vocabulary("โทรศัพท์", "เบอร์โทร", "电话", "手机", "携帯", "전화", "휴대폰"),
    }),
    "e-mail address": frozenset({
        "email", "e mail", "mail", "courriel", "correo electronico", "posta elettronica",
    }),
    "first or last name": frozenset({
        "prenom", "prenoms", "vorname", "nachname", "familienname", "surname", "firstname",
        "lastname", "first name", "last name", "given name", "family name", "forename",
        "apellido", "apellidos", "sobrenome", "cognome", "nazwisko", "imie", "soyad",
        "voornaam", "achternaam",
    }),
    "date of birth": frozenset({
        "birth", "dob", "birthdate", "birthday", "naissance", "nacimiento", "nascimento",
        "nascita", "geburtsdatum", "geburtstag", "geboortedatum", "urodzenia", "dogum",
    }),
    "national or tax id": frozenset({
        "passport", "passeport", "pasaporte", "passaporto", "passaporte", "reisepass",
        "paszport", "cpf", "curp", "rfc", "pesel", "dni", "nie", "nif", "nir", "ssn", "tckn",
        "kimlik", "tc kimlik", "national id", "personal id", "id card", "identity card",
        "carte identite", "identidad", "identidade", "personalausweis", "steuer id",
        "codice fiscale", "personnummer", "bsn", "nino", "niss", "registre national",
        "rijksregisternummer", "social security", "securite sociale", "seguridad social",
        "aadhaar", "nric",
        *_vocabulary("เลขประจำตัวประชาชน", "บัตรประชาชน", "เลขประจำตัวผู้เสียภาษี", "身份证",
                    "证件号码", "マイナンバー", "주민등록번호"),
    }),
    "street address": frozenset({
        "address", "adresse", "direccion", "endereco", "indirizzo", "adres", "addr",
        "anschrift", "domicile", "domicilio", "street", "strasse", "rue", "calle", "rua", "via",
        "ulica", *_vocabulary("ที่อยู่", "地址", "住所", "주소"),
    }),
    "postcode": frozenset({
        "postcode", "post code", "zip", "zipcode", "zip code", "code postal", "postal code",
        "codigo postal", "codice postale", "cod postal", "plz", "postleitzahl", "cep",
        "kod pocztowy", "postnummer", "postinumero", "pincode", "pin code",
        *_vocabulary("รหัสไปรษณีย์", "邮编", "邮政编码", "郵便番号", "우편번호"),
    }),
    # a name alone: a French export's NOM held the consignee's
    "name": frozenset({"name", "nom", "nombre", "nome", "naam", "full name", "fullname",
                       *_vocabulary("ชื่อ", "姓名", "名前", "이름", "성명")}),
    # a contact's number or address (CONTACT held phones written without a space)
    "contact": frozenset({"contact", "kontakt", "contacto", "contato", "contatto"}),
}  # fmt: skip
# Particulars a thing or a company has too (a product's name, an office's address, a carrier's
# mailbox), read as a person's only when the name says no such thing
_THINGS_HAVE_TOO = frozenset({"name", "street address", "postcode", "e-mail address"})
# Words of a name saying it is a thing's or a company's (``Product name``, ``Nom bureau``,
# ``Ship via``, ``Mail class``): the one-word names of the goods, their code and kind, the
# office, the carrier, the platform and the country, and words of companies and places. A
# seller's or shipper's name stays a person's (it may be one): a working entity all the same,
# under its pseudonym.
_NOT_A_PERSON = (
    frozenset(
        synonym
        for name in ("description", "hs_code", "category", "currency", "arrival_office",
                     "operator_id", "platform_id", "origin_country")
        for synonym in SYNONYMS[name]
        if " " not in synonym and synonym != "codigo"  # codigo postal is a person's
    )
    | _COUNTRY_WORDS
    | (_PLACE_WORDS - _UNSPACED_ADDRESSES - {"postcode", "zip", "plz", "cep", "address", "street",
                                             "postal"})
    | {
        "company", "societe", "entreprise", "empresa", "firma", "razao", "raison", "sociale",
        "corporation", "corp", "business", "commercial", "trade", "shop", "store", "boutique",
        "magasin", "brand", "marque", "marca", "marke", "model", "modele", "modelo", "modell",
        "manufacturer", "fabricant", "fabricante", "hersteller", "producto", "produto",
        "prodotto", "produkt", "merce", "ware", "waren", "articulo", "artigo", "articolo",
        "artikel", "bank", "banque", "broker", "forwarder", "transitaire", "agent", "agente",
        "commissionnaire", "despachante", "transitario", "fournisseur", "proveedor",
        "fornecedor", "lieferant", "airline", "vessel", "ship", "navire", "flight", "hub",
        "warehouse", "entrepot", "lager", "terminal", "airport", "aeroport", "station",
        "customs", "douane", "zoll", "file", "fichier", "sheet", "class", "unit", "bag",
        *_vocabulary("บริษัท", "ร้าน", "公司", "企业", "会社", "회사", "상호"),
    }
)  # fmt: skip
_EMAIL = r"[^@\s]+@[^@\s]+\.[a-z]{2,}"
# Share of a column's values a reading of them as a person's phones, addresses or names must
# take (a few blanks written "n/a" or "-" aside)
_MOST = 0.6
_PHONE_CHARS = re.compile(r"\+?[\d ()./-]+")
# what digits in groups are when no phone: a date (2026-07-01, 01/07/2026), an amount
# (1 234 567,89, 12345.67), a reference of a year (0123/2026/000045)
_NOT_A_PHONE = re.compile(
    r"\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}"
    r"|\d{1,3}(?:[ .,]\d{3})+(?:[.,]\d{1,2})?|\d+[.,]\d{1,2}"
    r"|.*(?:^|[./-])(?:19|20)\d{2}(?:$|[./-]).*"
)
_NANP = re.compile(r"\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}")  # (555) 123-4567, 555.123.4567


def _phone_shaped(value: str) -> bool:
    """A phone number as people write it: a ``+`` and the country code (+32 470 998877,
    +33612345678), or digit groups after a trunk prefix or an area code (0470/99.88.77,
    (555) 123-4567). A run of digits alone is no phone (an HS code, an id); nor an S10
    barcode, a date or an amount."""
    digits = sum(c.isdigit() for c in value)
    if not 7 <= digits <= 15 or not _PHONE_CHARS.fullmatch(value):
        return False
    if value.startswith("+"):
        return digits >= 8
    if not re.search(r"[ ()./-]", value) or _NOT_A_PHONE.fullmatch(value):
        return False
    return value.startswith(("0", "(")) or bool(_NANP.fullmatch(value))


def _thai_national_id(value: str) -> bool:
    """A Thai national id: 13 digits, the last the check digit of the first 12 (weights 13 to
    2, mod 11); one number of 10 passes by chance."""
    if len(value) != 13 or not value.isdigit() or value[0] == "0":
        return False
    total = sum(int(d) * w for d, w in zip(value[:12], range(13, 1, -1), strict=True))
    return (11 - total % 11) % 10 == int(value[12])


# Words of a street in an address, as ``_plain`` writes them: enough alone (Rue des Lilas), or
# with a house number where a word is short or common (12 Main St, Polna 12 ul)
_STREETS = frozenset({
    "rue", "avenue", "boulevard", "chemin", "allee", "impasse", "street", "strasse", "gasse",
    "calle", "avenida", "rua", "travessa", "via", "viale", "piazza", "corso", "vicolo",
    "straat", "ulica", "caddesi", "cadde", "sokak", "sokagi",
})  # fmt: skip
_STREETS_WITH_A_NUMBER = frozenset({
    "st", "rd", "road", "ln", "lane", "dr", "drive", "ave", "av", "bd", "blvd", "way", "court",
    "ct", "square", "sq", "place", "pl", "platz", "weg", "laan", "plein", "kade", "quai",
    "route", "ring", "str", "ul", "al", "aleja", "avda", "paseo", "carrera", "praca",
    "estrada", "sok", "cad", "gracht", "gatan", "vej",
})  # fmt: skip
# endings of a street's name written as one word (Zebrastraat, Hauptstrasse, Storgatan)
_STREET_ENDINGS = ("straat", "strasse", "gasse", "laan", "weg", "plein", "gracht", "platz",
                   "gatan", "vej", "veien")  # fmt: skip


_WORD = re.compile(r"[0-9a-z]+")


def _street_shaped(value: str) -> bool:
    """A street address: a street's word (17 Zebrastraat, Rue des Lilas, ul. Polna 12)."""
    # as _plain writes it, which is slow enough to weigh on a wide export: only where needed
    words = _WORD.findall(value.lower()) if value.isascii() else _plain(value).split()
    number = any(w.isdigit() for w in words)
    return any(
        w in _STREETS
        or (number and w in _STREETS_WITH_A_NUMBER)
        or (number and len(w) > 6 and w.endswith(_STREET_ENDINGS))
        for w in words
    )


# Words of a person's name written small between capitalised ones (Ana de Souza, Jan van Dijk)
_NAME_PARTICLES = frozenset({"de", "del", "della", "di", "da", "das", "do", "dos", "du", "la",
                             "le", "van", "von", "der", "den", "ten", "ter", "bin", "al", "y",
                             "e"})  # fmt: skip
_NAME_TOKEN = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]*)*")


def _person_name_shaped(value: str) -> bool:
    """A person's name: 2 to 4 words of letters, each capitalised but for a particle
    (Wilhelmina Quarkfeather, DUPONT Jean, Dupont, Jean, Ana de Souza); no digit."""
    words = value.replace(",", " ").split()
    if not 2 <= len(words) <= 4 or not all(_NAME_TOKEN.fullmatch(w) for w in words):
        return False
    capitalised = [w for w in words if w[0].isupper()]
    small = [w for w in words if not w[0].isupper()]
    return len(capitalised) >= 2 and all(w in _NAME_PARTICLES for w in small)


# Values a shape is tried on: spread over the sample, enough for a share (a wide export's
# columns each cost their reading)
_SHAPES_READ = 2_000


def _mostly(column: Column, shaped: Any) -> bool:
    """Whether ``shaped`` says yes to most of the values (``_MOST``; each asked once)."""
    key = f"mostly:{shaped.__name__}"
    if key not in column.memo:
        values = column.values[:: max(1, len(column.values) // _SHAPES_READ)]
        allowed, misses = (1 - _MOST) * len(values), 0
        for value in values:
            misses += not shaped(value)
            if misses > allowed:  # most are not: no need to read on
                break
        column.memo[key] = bool(values) and misses <= allowed
    return column.memo[key]


@_memo
def _personal_particular(column: Column) -> str | None:
    """What a column holds of a private person (``phone``, ``street address``, ``name, by its
    values`` ...), by its name or its values whatever the name; None if no one's. A false
    positive costs an opt-in and a reason said with a pseudonym; a false negative puts a
    person's phone raw in every store and artifact."""
    a_thing = bool(_said(column, _NOT_A_PERSON))
    for what, names in _PERSONAL_PARTICULARS.items():
        if _said(column, names) and not (a_thing and what in _THINGS_HAVE_TOO):
            return what
    if _said(column, _PERSON_PARTIES) and _said(column, _PARTICULARS):
        return "identifier"
    if column.fit(_LONG_NUMBER) >= FITS and _mostly(column, _thai_national_id):
        return "national id, by its values"
    if column.typed != "text":  # numbers and dates a source typed: no phone, no name
        return None
    if column.fit(_EMAIL) >= 0.5:
        return "e-mail address, by its values"
    if _mostly(column, _phone_shaped):
        return "phone, by its values"
    if _mostly(column, _street_shaped):
        return "street address, by its values"
    # names repeat as their people do, fewer than a category's values; never the goods' text
    named_for_goods = a_thing or _name_score(column, "description") > 0
    if (
        not named_for_goods
        and column.distinct >= 20
        and column.unique >= 0.1
        and _mostly(column, _person_name_shaped)
    ):
        return "name, by its values"
    return None


# Outcome fields whose names are specific enough to keep a column named for one out of the
# extras (revenue and selection reasons are named with words like "tax" or "reason" that other
# columns share; the training's leak guard, ``models.leakage``, catches what a name cannot).
_RESULT_FIELDS = ("illicit", "offence_type", "inspected", "inspected_at", "result_known_at")


# Words saying an amount was recovered by a control (revenue alone is named with words, such
# as tax or duty, that declared amounts share): "Tributo Recuperado" was kept as an extra
# (probe, 2026-12). Every gender and number of the participle: Portuguese
# "Direitos_Recuperados", "Receita_Recuperada" and "Valor_Recuperado" went unmapped from a
# results draft, the first two read as no field at all (probe 27)
_RECOVERED_WORDS = frozenset({
    "recovered", "recuperado", "recuperada", "recuperados", "recuperadas", "recouvre",
    "recouvres", "recouvree", "recouvrees", "redressement", "redresse", "redresses",
    "recupere", "recuperes", "recuperee", "recuperees", "recuperato", "recuperata",
    "recuperati", "recuperate", "nachforderung", "nacherhebung", "nachgefordert",
    "nachgeforderte", "nacherhoben", "nacherhobene", "zuruckgefordert", "nagevorderd",
    "teruggevorderd", "accertati", "accertato", "доначислено", "доначисленные", "追征税款",
    "补税金额", "补征税款", "추징세액", "liquidada",
    # the common customs terms probe 28 found missing: Dutch, Polish, Russian, Chinese, Japanese
    # (as _plain writes them: its Traditional-to-Simplified table turns 額 into 额)
    "navordering", "navorderingen", "nagevorderde", "odzyskane", "odzyskana", "odzyskany",
    "odzyskano", "взысканные", "взыскано", "взыскание", "доначисления", "доначисление",
    "доначислений", "追缴税款", "追缴金额", "追缴税额", "补缴税款", "追徴税额", "追徴金额",
    "追徴税", "追徴",
})  # fmt: skip


def _named_as_result(column: Column) -> str | None:
    """The outcome field a column's name says it holds, unless it names a party (an
    inspector's or agent's id is not the result)."""
    if _said(column, _PARTY_WORDS):
        return None
    named = [name for name in _RESULT_FIELDS if _name_score(column, name) >= 0.6]
    if not named and _said(column, _RECOVERED_WORDS):
        return "revenue_recovered"
    return named[0] if named else None


def _why_left_out_of_results(column: Column) -> str:
    """Why a results draft leaves a column out: named like an outcome field it did not map
    (said so, as a result to map if it is one: "a results mapping keeps none" was said of the
    recovered duties, an outcome, probe 27), else no extras in a results mapping."""
    named = [name for name in _OUTCOMES if _name_score(column, name) >= 0.6]
    result = named[0] if named else _named_as_result(column)
    if result is None:
        return "a results mapping keeps no extras"
    values = ", ".join(sorted(set(column.values))[:4])
    return (
        f"named like {result}, a result this draft did not map: map it as {result} if it is "
        f"one (values {values})"
    )


# Words naming what happens to a declaration after it is lodged (its release, clearance, the
# delay before them): a report's column known only once processed, and longest for parcels
# held by a control, so it tells the result without being one; no model input. Caught once:
# "Release delay (h)" kept as an extra trained at AUC 0.98 and scored arrivals, where it is
# empty, with one risk for all (probe, 2026-12).
_AFTER_DECLARATION_WORDS = frozenset({
    "release", "released", "clearance", "cleared", "delay", "dwell", "mainlevee",
    "freigabe", "levante", "svincolo", "liberation", "desembaraco", "odprawa",
})  # fmt: skip


@_memo
def _row_numbers(column: Column) -> bool:
    """Whether a column numbers the rows (1, 2, 3 ..., from any start): whole numbers on every
    row, each one more than the row before. A sample of a long file is of rows spread evenly,
    so its numbers rise by that spacing (steps of one size or the next); a short file's sample
    is every row, steps of one."""
    import numpy as np

    if column.filled < 1 or len(column.values) < 3 or column.fit(r"\d{1,15}") < 1:
        return False
    steps = np.diff(np.array([int(v) for v in column.values], dtype=np.int64))
    if len(column.values) < SAMPLE_ROWS:
        return bool((steps == 1).all())
    return bool(steps.min() >= 1 and steps.max() - steps.min() <= 1)


def _why_ignored(column: Column) -> str | None:
    if column.filled == 0:
        return "empty"
    after = sorted(_said(column, _AFTER_DECLARATION_WORDS))
    if after:
        return (
            f"named for what follows the declaration ({', '.join(after)}): known once it is "
            "processed, longest where a control held it, never at declaration; keep it only "
            "if your arrivals carry it"
        )
    if _lane_colours(column):
        return (
            "the lane each declaration was sent to (its colours): the old selection, known "
            "only once the declaration was assessed, never a feature; if a lane means the "
            "parcel was inspected, map inspected from it (values table)"
        )
    result = _named_as_result(column)
    if result is not None:
        # a result kept as a feature gives a model that wins every held-out metric and lanes
        # nothing on declarations, which arrive without it
        values = ", ".join(sorted(set(column.values))[:4])
        return (
            f"named like {result}, an inspection result, never a feature: map it as {result} if "
            f"it is one (values {values})"
        )
    if column.distinct <= 1:
        return "one value"
    if _row_numbers(column):
        return "the rows' numbers, one more each row: where a row is in the file, no parcel's"
    # ids of 13 digits or more are no numbers (_LONG_NUMBER), and say nothing new on each row
    if (
        column.unique >= 0.95
        and column.filled > 0.5
        and (_number_style(column) is None or column.fit(_LONG_NUMBER) >= FITS)
    ):
        return "a different value on nearly every row"
    if column.typed == "datetime" or _date_formats(column) is not None:
        return "dates"
    mean_length = sum(len(v) for v in column.values) / max(1, len(column.values))
    if mean_length > 30:
        return "free text"
    return None


# Share of rows whose id repeats from which an export is read as one row per goods item: an
# export by item repeats the ids of every declaration of several goods (a fifth or more of
# them); a declaration export repeats a few ids by mistake.
ITEM_ROWS_SHARE = 0.02


_ITEM_ROWS_SEEN = 20_000


def _differs_between_items(raw: pd.DataFrame, chosen: dict[str, Column]) -> set[str]:
    """The columns of an item export whose cells differ between the item rows of a declaration
    (the declaration id ``chosen``), in the rows the draft read."""
    ids_column = chosen.get("declaration_id")
    if ids_column is None:
        return set()
    ids = raw[ids_column.name].astype("string").str.strip()
    repeated = ids.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return set()
    # the item rows of the first declarations are enough to see it (a million-row export's
    # draft would otherwise group every column of every row)
    rows, keys = raw.loc[repeated].head(_ITEM_ROWS_SEEN), ids[repeated].head(_ITEM_ROWS_SEEN)
    return {
        str(name)
        for name in raw.columns
        if rows[name].astype("string").groupby(keys.to_numpy()).nunique(dropna=True).gt(1).any()
    }


def _items_block(
    raw: pd.DataFrame, chosen: dict[str, Column], proposals: dict[str, Proposal]
) -> tuple[dict[str, str], str] | None:
    """The ``items:`` block of an export with one row per goods item (its ids repeat), and
    what it was guessed from; None when every id is on one row.

    Amounts and weights must be stated (``features.intake.items.MUST_BE_STATED``): a field
    written the same on every item row of each declaration is the declaration's (``agree``:
    summed, a weight repeated per item would be multiplied), one that differs is per item
    (``sum``; ``sum_given`` for revenue, which items without a finding leave empty). A flag
    that differs between items is the declaration's if any item's is (``any``).
    """
    from features.intake.items import MUST_BE_STATED

    ids_column = chosen.get("declaration_id")
    if ids_column is None:
        return None
    ids = raw[ids_column.name].astype("string").str.strip()
    counts = ids.value_counts()
    repeated = ids.isin(counts.index[counts > 1])
    if repeated.mean() < ITEM_ROWS_SHARE:
        # a few ids twice are duplicates, which the gate names, not an export by goods item
        return None
    rules: dict[str, str] = {}
    for name in (*MUST_BE_STATED, "illicit", "inspected"):
        column = chosen.get(name)
        if column is None or name not in proposals:
            continue
        cells = raw.loc[repeated, column.name].astype("string").str.strip()
        same = cells.groupby(ids[repeated]).nunique(dropna=True).le(1).all()
        if name in MUST_BE_STATED:
            rules[name] = (
                "agree" if same else ("sum_given" if name == "revenue_recovered" else "sum")
            )
        elif not same:
            rules[name] = "any"
    why = (
        f"ids repeat ({int(repeated.sum()):,} rows for {int((counts > 1).sum()):,} "
        "declarations): one row per goods item guessed; agree = the same on each item row "
        "(the declaration's), sum = per item"
    )
    return rules, why


_TIME_WORDS = frozenset({"time", "heure", "hora", "zeit", "uhrzeit", "ora", "tijd", "hour", "hh",
                        "שעה", "เวลา", "время"})  # fmt: skip
# ... and inside a name written without spaces (申报时间, 申告時刻, 신고시간)
_TIME_PARTS = _vocabulary("时间", "時間", "時刻", "시간", "시각")


def _named_for_time(column: Column) -> bool:
    return bool(_said(column, _TIME_WORDS) or _said(column, _TIME_PARTS))


_RESULT_WORDS = frozenset({"control", "controle", "inspection", "result", "resultat", "kontrolle"})


def _join_times_of_day(
    columns: list[Column], proposals: dict[str, Proposal], used: set[str]
) -> None:
    """A date column with its time of day in another column (``DATE`` + ``HEURE``): read
    together, a bare date where the time is empty. The time column is one named for a time
    whose values are times; a result's time is the one whose name also says control or
    result, the declaration's one that does not."""
    times = [
        c
        for c in columns
        if c.name not in used and _named_for_time(c) and c.fit(r"\d{1,2}:\d{2}(?::\d{2})?") >= FITS
    ]
    for name in ("inspected_at", "declared_at"):
        proposal = proposals.get(name)
        spec = proposal.spec if proposal is not None else None
        if not isinstance(spec, dict) or "column" not in spec:
            continue
        formats = spec.get("format")
        listed = [formats] if isinstance(formats, str) else list(formats or [])
        if formats == "excel" or any("%H" in f for f in listed):
            continue  # the date holds its time already
        of_results = name == "inspected_at"
        match = next((c for c in times if bool(_said(c, _RESULT_WORDS)) == of_results), None)
        if match is None:
            continue
        times.remove(match)
        used.add(match.name)
        seconds = ":%S" if match.fit(r"\d{1,2}:\d{2}:\d{2}") >= FITS else ""
        joined: dict[str, Any] = {"columns": [spec.pop("column"), match.name]}
        if listed:
            joined["format"] = [f"{f} %H:%M{seconds}" for f in listed] + listed
        # the time joined: no day's-end offset (a result without its time is then a bare date)
        kept = {k: v for k, v in spec.items() if k not in ("format", "offset")}
        proposal.spec = {**joined, **kept}
        proposal.checks = [c for c in proposal.checks if c != _END_OF_DAY]
        proposal.checks.append(f"its time of day read from {match.name}")
        proposal.source = " + ".join(joined["columns"])


_CENSUS_RESULT_TIME = (
    "no column gives when results were known: read as a day after the declaration date; map "
    "the result date if the export has one"
)


def _zero_lost(column: Column) -> int | None:
    """The length of the codes that lost their leading zero, when the column says so itself:
    most codes of one even length (6, 8 or 10 digits) and every odd one a digit shorter (DATE's
    tariff.code, written as an integer: 901210000 beside 8517120000). None when it cannot tell
    (a national tariff of 9 digits is written so on every row)."""
    import pandas as pd

    lengths = pd.Series(column.values).str.strip().str.len()
    common = int(lengths.mode().iloc[0])
    odd = lengths[lengths % 2 == 1]
    if common % 2 or not len(odd) or (odd != common - 1).any() or len(odd) >= len(lengths) / 2:
        return None
    return common - 1


def _census_result_time(
    chosen: dict[str, Column], proposals: dict[str, Proposal]
) -> Proposal | None:
    """``inspected_at`` for a census of results (every row inspected, or every row with a
    result, no column saying when): the declaration's date a day later, when it is a date
    without a time of day (read at its midnight, a result would precede the declarations of
    its own day: ``_END_OF_DAY``)."""
    inspected, declared = proposals.get("inspected"), proposals.get("declared_at")
    column, illicit = chosen.get("declared_at"), chosen.get("illicit")
    census = inspected is not None and (
        inspected.spec == {"value": True}
        or (illicit is not None and inspected.spec == {"column": illicit.name, "given": True})
    )
    if not census or declared is None or column is None:
        return None
    spec = declared.spec if isinstance(declared.spec, dict) else {"column": declared.spec}
    if "column" not in spec:
        return None  # a date joined to its time of day (columns: [DATE, TIME])
    formats, _ = _date_formats(column) or (None, [])
    if not _dates_only(column, formats):
        return None
    return Proposal({**spec, "offset": "1 day"}, [_CENSUS_RESULT_TIME], column.name)


def _outcomes_on_every_row(
    raw: pd.DataFrame, chosen: dict[str, Column], proposals: dict[str, Proposal]
) -> bool:
    """Whether the export writes a result on parcels it says were not inspected (ASYCUDA
    writes illicit 0, or duties 0, on every green parcel): then ``outcomes_only_if_inspected``
    reads those cells as empty, or the gate refuses every such row. Judged on the rows the
    drafted ``inspected`` says were not (a yes/no column, or a result given only on some)."""
    inspected = _inspected_rows(raw, proposals)
    if inspected is None:
        return False
    source = proposals["inspected"].source
    for name in ("illicit", "offence_type", "revenue_recovered", "inspected_at"):
        column = chosen.get(name)
        if column is None or name not in proposals or column.name == source:
            continue
        cells = raw.loc[~inspected, column.name].astype("string").str.strip()
        if bool((cells.notna() & (cells != "")).any()):
            return True
    return False


def _inspected_rows(raw: pd.DataFrame, proposals: dict[str, Proposal]) -> np.ndarray | None:
    """Which rows the drafted ``inspected`` says were inspected (None: no column says it, or
    nearly all or none were, where a column filled only on them says nothing)."""
    proposal = proposals.get("inspected")
    if proposal is None or proposal.source is None or not isinstance(proposal.spec, dict):
        return None
    text = raw[proposal.source].astype("string").str.strip().str.lower()
    if "true_values" in proposal.spec:
        yes = text.isin([str(v).lower() for v in proposal.spec["true_values"]])
    elif "values" in proposal.spec:
        yes = text.isin([str(k).lower() for k, v in proposal.spec["values"].items() if v is True])
    else:  # inspected where the result is given
        yes = text.notna() & (text != "")
    mask = yes.to_numpy(dtype=bool, na_value=False)
    return mask if 0.01 <= mask.mean() <= 0.9 else None


# Share of the rows a yes/no column or a result marks on which both do, for the yes/no column to
# say which parcels were inspected by its values. Of the rows either marks, not of all rows: a
# flag saying yes on 2% of them would agree with any column empty on 98%.
_COINCIDES = 0.95


def _filled_rows(cells: pd.Series) -> np.ndarray:
    """Which rows hold a value (blank text is none)."""
    text = cells.astype("string").str.strip()
    return (text.notna() & (text != "")).to_numpy(dtype=bool, na_value=False)


def _same_rows(marked: np.ndarray, others: np.ndarray) -> float:
    """The share of the rows either marks that both mark (1.0: the very same rows)."""
    either = int((marked | others).sum())
    return int((marked & others).sum()) / either if either else 0.0


def _says_nothing_found(column: Column) -> bool:
    """Whether a finding column writes "nothing found" too (NIL, clean, ok): filled on every
    inspection, not only on the hits (a column of SEIZED or blank marks the illicit)."""
    return any(_plain(value) in _NO for value in set(column.values))


def _inspection_by_values(
    raw: pd.DataFrame, columns: list[Column], chosen: dict[str, Column], used: set[str]
) -> dict[str, tuple[Column, str]]:
    """``inspected`` and ``inspected_at`` read from their values where no name said them, each
    with the check saying from what: a yes/no column (Y/N, 1/0, TAK/NIE) saying yes on the rows
    a result is written on (the inspection's date, a finding that writes "nothing found" too)
    and no where none is; and a date left over filled on the rows the flag, by its values or
    its name, says yes. Only in an export holding results (a result field drafted, or a column
    named like one): a flag and a date that agree say nothing of an inspection without them.

    A Y/N ``CTRL`` beside ``CTRL_DATE`` and ``FINDING`` was drafted as a feature, and every
    parcel as inspected; renamed CONTROL it was read, so only its name was (probe 33)."""
    free = [
        c
        for c in columns
        if c.name not in used
        and c.filled > 0
        and not _said(c, _AFTER_DECLARATION_WORDS)  # a release's, never a control's
    ]
    if not any(n in chosen for n in _OUTCOMES) and not any(_named_as_result(c) for c in free):
        return {}
    dates = [
        c
        for c in free
        if c.filled < FITS and (c.typed == "datetime" or _date_formats(c) is not None)
    ]
    records = [chosen[name] for name in ("inspected_at",) if name in chosen] + dates
    records += [
        c
        for c in (chosen.get("illicit"), *free)
        if c is not None and _named_as_result(c) == "illicit" and _says_nothing_found(c)
    ]
    found: dict[str, tuple[Column, str]] = {}
    flag = chosen.get("inspected")
    if flag is None:
        read = _flag_coinciding(raw, free, records)
        if read is None:
            return found
        found["inspected"] = read
        flag = read[0]
    if "inspected_at" not in chosen:
        read = _date_coinciding(raw, flag, [date for date in dates if date is not flag])
        if read is not None:
            found["inspected_at"] = read
    return found


def _flag_coinciding(
    raw: pd.DataFrame, free: list[Column], records: list[Column]
) -> tuple[Column, str] | None:
    """Of the yes/no columns ``free``, the one whose yes rows are most nearly the rows one of
    ``records`` is filled on (``_COINCIDES``), with the check saying so; None if none is."""
    filled = {record.name: _filled_rows(raw[record.name]) for record in records}
    best: tuple[float, Column, Column, str, str] | None = None
    for column in free:
        words = _flag_values(column)
        # two values, one yes and one no, on every row: an inspection is done or not
        if column.filled < FITS or words is None or [len(w) for w in words] != [1, 1]:
            continue
        if _named_as_result(column) not in (None, "inspected"):
            continue  # named for the finding: illicit's, if anything's
        yes = _rows_saying_yes(raw, column, words[0])
        if yes is None:
            continue
        for record in records:
            same = _same_rows(yes, filled[record.name]) if record is not column else 0.0
            if same >= _COINCIDES and (best is None or same > best[0]):
                best = (same, column, record, words[0][0], words[1][0])
    if best is None:
        return None
    same, flag, record, yes_word, no_word = best
    return flag, (
        f"read as the inspection flag by its values, not its name: {yes_word} on the rows where "
        f"{record.name} is filled, {no_word} where it is empty ({same:.1%} the same rows)"
    )


def _date_coinciding(
    raw: pd.DataFrame, flag: Column, dates: list[Column]
) -> tuple[Column, str] | None:
    """Of the ``dates`` with blanks, the first filled on the rows ``flag`` says yes on
    (``_COINCIDES``): when those parcels were inspected, with the check saying so."""
    words = _flag_values(flag)
    yes = _rows_saying_yes(raw, flag, words[0]) if words else None
    if yes is None or not dates:
        return None
    agreeing = [(_same_rows(yes, _filled_rows(raw[date.name])), date) for date in dates]
    same, date = max(agreeing, key=lambda pair: pair[0])  # the first of equals
    if same < _COINCIDES:
        return None
    return date, (
        f"read as the inspection date by its values, not its name: filled on the rows "
        f"{flag.name} says {', '.join(words[0])} ({same:.1%} the same rows)"
    )


def _rows_saying_yes(raw: pd.DataFrame, column: Column, yes: list[str]) -> np.ndarray | None:
    """The rows a yes/no column says yes on, as ``_inspected_rows`` reads a drafted flag (None:
    nearly every row or none)."""
    flag = Proposal({"column": column.name, "true_values": yes}, source=column.name)
    return _inspected_rows(raw, {"inspected": flag})


def _recorded_by_inspection(
    cells: pd.Series, column: Column, inspected: np.ndarray | None
) -> str | None:
    """Why a column left over is an inspection's record, not a declaration's (None: it is not
    seen to be): filled only on the inspected rows (a result's time, a control reference), or a
    flag saying what ``inspected`` says. Kept as a feature it is a leak: declarations arrive
    without it, and the model learns from labels that all have it."""
    if inspected is None or column.filled == 0:
        return None
    text = cells.astype("string").str.strip()
    present = _filled_rows(cells)
    n_inspected = int(inspected.sum())
    outside = int((present & ~inspected).sum())
    if present.sum() >= 0.5 * n_inspected and outside <= 0.01 * present.sum():
        # a finding left over once the flag says which rows were inspected (FINDING: NIL,
        # SEIZED) is named for the result it is, as _why_ignored names it
        result = _named_as_result(column)
        as_what = (
            f"{result} (values {', '.join(sorted(set(column.values))[:4])})"
            if result
            else "a result (inspected_at, revenue_recovered...)"
        )
        return (
            f"filled only on the {n_inspected:,} inspected rows: recorded by the inspection, "
            f"never a feature; map it as {as_what} if it is one"
        )
    flags = _flag_values(column)
    if flags and flags[0]:
        yes = (
            text.str.lower()
            .isin([v.lower() for v in flags[0]])
            .to_numpy(dtype=bool, na_value=False)
        )
        if (yes == inspected).mean() >= 0.99:
            return "says what inspected says, row for row: an inspection's record, never a feature"
    return None


def _fallbacks(
    columns: list[Column], chosen: dict[str, Column], used: set[str], results: bool
) -> None:
    """Required fields no name pointed to, where the values alone can say: the first column of
    dates left is when declarations were lodged (in a results file, when results were); the
    first column with a different value on every row is the declaration id (exports put it
    first; in a results file the id may repeat only if the file is by goods item); the first
    column of numbers each written with a unit of weight is the weight (``_WEIGHT_BY_UNITS``)."""
    free = [c for c in columns if c.name not in used and c.filled > 0]
    when = "inspected_at" if results else "declared_at"
    if when not in chosen:
        dates = [c for c in free if c.typed == "datetime" or _date_formats(c) is not None]
        if dates:
            chosen[when] = dates[0]
            used.add(dates[0].name)
    if not results and "gross_weight_kg" not in chosen:
        # before the id: a weight with its unit is never one (unique enough, it could be taken)
        weights = [c for c in free if c.name not in used and _weight_units_in_cells(c)]
        if weights:
            chosen["gross_weight_kg"] = weights[0]
            used.add(weights[0].name)
    if "declaration_id" not in chosen:
        for column in free:
            if column.name in used:
                continue
            if column.unique >= 0.99 and column.filled >= FITS and _date_formats(column) is None:
                chosen["declaration_id"] = column
                used.add(column.name)
                break
    if results and "revenue_recovered" not in chosen:
        # a results file's one amount is what the inspection recovered, however it is named
        # ("MONTANT" was left out as "a results mapping keeps no extras", and with it the
        # revenue model's labels, probe 32); proposed with a check (``_AMOUNT_RESULT_CHECK``)
        for column in free:
            if (
                column.name not in used
                and _names_amount(column)
                and _number_style(column) is not None
            ):
                chosen["revenue_recovered"] = column
                used.add(column.name)
                break


# A value of words, not a code: two letters in a row (any script: 礼物, подарок), and not one
# token holding a digit (SHP001, RR123456789CN and PROFILE_1 are codes)
_WORDS_NOT_A_CODE = r"(?s)(?=.*[^\W\d_]{2})(?!\S*\d\S*$).*"


def _goods_text(column: Column) -> bool:
    """Whether a column holds text of words (goods as a sender writes them: ``gift``,
    ``T-shirt``, ``礼物``), not codes, numbers or dates, and could be the goods' text: not a
    result, a lane, a person's particular or one value repeated."""
    return (
        column.typed == "text"
        and column.distinct > 1
        and _number_style(column) is None
        and _date_formats(column) is None
        and column.fit(_WORDS_NOT_A_CODE) >= FITS
        and _named_as_result(column) is None
        and not _said(column, _AFTER_DECLARATION_WORDS)
        and not _lane_colours(column)
        and not _category_words(column)
        and _personal_particular(column) is None
    )


def _description_by_name(
    columns: list[Column], chosen: dict[str, Column], used: set[str]
) -> str | None:
    """Where no column was taken for the description, the first column left whose name says
    it (one word of it: ``Contents EN``, ``Goods CN``) more than any other field, and whose
    values are words: taken for it, and the check to write. Its short texts (``_fits`` wants
    a mean of 8 characters unless the whole name says description) had left it an entity
    extra, the text, watchlist and vague-description features off unsaid (probe 38)."""
    if "description" in chosen:
        return None
    for column in columns:
        if column.name in used or column.filled == 0:
            continue
        named = _name_score(column, "description")
        others = max(_name_score(column, n) for n in _FIELD_ORDER if n != "description")
        if named > others and _goods_text(column):
            chosen["description"] = column
            used.add(column.name)
            mean = sum(len(v) for v in column.values) / len(column.values)
            return (
                f"chosen by a word of its name, its values words (mean {mean:.0f} characters): "
                "check it is the goods' description, not a code or a category"
            )
    return None


def _named_for_contents(column: Column) -> bool:
    """A column of categories of item whose name says the goods' description at least as much
    as the category ("Inhalt", "Nature of contents"): taken for the category by its values."""
    says = _name_score(column, "description")
    return says > 0 and says >= _name_score(column, "category") and _category_words(column)


_CATEGORY_NOT_DESCRIPTION = (
    "its name may say the goods' contents, its values are the CN22/CN23 categories of item "
    "(gift, documents, sale of goods...): read as the category, not the description"
)

# Mean length from which a column of words left over reads as free text
_FREE_TEXT_CHARS = 30


def _likely_descriptions(columns: list[Column], used: set[str]) -> list[Column]:
    """Columns left over that look like the goods' text where no description is mapped:
    words, not codes, and free text (a mean over 30 characters) or too many to be a
    category; the first is the likely description. A draft that mapped none said nothing of
    it, and the text features stayed off unsaid (probe 38)."""
    found = []
    for column in columns:
        if column.name in used or column.filled == 0 or not _goods_text(column):
            continue
        if _said(column, _PARTY_WORDS | _PLACE_WORDS | _IDENTIFIER_WORDS):
            continue  # a party's name, a place, an id: said so by the name
        mean = sum(len(v) for v in column.values) / len(column.values)
        if mean > _FREE_TEXT_CHARS or column.distinct > _CATEGORIES_AT_MOST:
            found.append(column)
    return found


def _likely_description_check(column: Column) -> str:
    mean = sum(len(v) for v in column.values) / len(column.values)
    return (
        f"no column is named for the goods description; {column.name} holds text (mean "
        f"{mean:.0f} characters, {column.distinct:,} distinct in the sample): if it is the "
        "description, uncomment this line (the text, watchlist and vague-description "
        "features read only description)"
    )


_AMOUNT_RESULT_CHECK = (
    "an amount in a results file, read as the duty recovered by the inspection: check it is "
    "not the declared value"
)
# Weights that say their unit in every cell ("250 g", "1,79 kg") under a name the synonyms miss
# (Polish MASA) went in as an entity extra, every weight a "party" with a history, and the
# weight as a TODO (probe 33): the units say what the name does not.
_WEIGHT_BY_UNITS = (
    "recognised as the weight by the units in its cells, not by its name: check it is the "
    "parcel's gross weight"
)


def _weight_unit_column(columns: list[Column], weight: Column, used: set[str]) -> Column | None:
    """The column beside a weight holding the unit of each (``Weight`` + ``Weight unit``: KG,
    G, LB; ``Peso`` + ``Unidade``), whatever its name: of the columns of units left, one whose
    name shares a word with the weight's, else the nearest in the file. None when there is
    none, or the weight's cells carry their own units. Unjoined, the grams rows went in as
    kilograms and the unit column became a categorical input (probe), or the arrival office
    (probe 27)."""
    style = _number_style(weight)
    if style is not None and style[2]:
        return None  # 12 kg, 500 g: each cell says its own unit
    units = [c for c in columns if c.name not in used and _unit_tokens(c) == "weight"]
    if not units:
        return None
    place = {c.name: i for i, c in enumerate(columns)}
    words = set(weight.words.split())
    return min(
        units,
        key=lambda c: (
            not set(c.words.split()) & words,
            abs(place[c.name] - place[weight.name]),
        ),
    )


# Currencies whose amounts are written in whole units, large (no minor unit in ISO 4217, or
# none in use): a dot followed by three digits in them is a thousands separator, 505.200 CLP
# is 505,200 pesos, not 505.2.
_WHOLE_UNIT_CURRENCIES = frozenset({
    "CLP", "COP", "PYG", "JPY", "KRW", "VND", "IDR", "ISK", "UGX", "XOF", "XAF", "XPF",
    "KMF", "GNF", "RWF", "BIF", "DJF", "VUV", "HUF", "MGA", "LAK", "UZS", "IRR",
})  # fmt: skip


def _dot_groups_of_three(chosen: dict[str, Column], proposals: dict[str, Proposal]) -> None:
    """Amounts whose every dot is followed by exactly three digits (505.200, 12.800) read
    both ways: decimals, or thousands. In a currency written in whole units
    (``_WHOLE_UNIT_CURRENCIES``, from the currency column or constant) they are thousands;
    otherwise the draft reads decimals and says so. Unsaid, 505.200 CLP went in as 505.2,
    every value a thousand times too small (probe)."""
    currency = proposals.get("currency")
    codes: set[str] = set()
    if currency is not None and isinstance(currency.spec, dict) and "value" in currency.spec:
        codes = {str(currency.spec["value"]).upper()}
    elif "currency" in chosen:
        codes = {v.upper() for v in chosen["currency"].values}
    whole = bool(codes) and codes <= _WHOLE_UNIT_CURRENCIES
    for name in ("declared_value", "revenue_recovered"):
        column, proposal = chosen.get(name), proposals.get(name)
        if column is None or proposal is None:
            continue
        spec = proposal.spec if isinstance(proposal.spec, dict) else {"column": proposal.spec}
        if spec.get("thousands") or spec.get("part"):
            continue
        if spec.get("decimal") == ",":
            # the same with a comma: 1,234 yen read as 1.234 (probe, 2026-12)
            commas = [v for v in column.values if "," in v]
            if not commas or not all(re.fullmatch(r"-?\d{1,3}(?:,\d{3})+", v) for v in commas):
                continue
            proposal.spec = spec
            if whole:
                del spec["decimal"]
                spec["thousands"] = ","
                proposal.checks.append(
                    f"every ',' is followed by three digits, in {', '.join(sorted(codes))} "
                    f"(whole units): read as thousands ({commas[0]} = {commas[0].replace(',', '')})"
                )
            else:
                proposal.checks.append(
                    f"every ',' is followed by three digits ({commas[0]}): read as a decimal "
                    f"comma; if they are thousands, say thousands: ',' without decimal"
                )
            continue
        if spec.get("decimal", ".") != ".":
            continue
        dotted = [v for v in column.values if "." in v]
        if len(dotted) < max(3, len(column.values) // 10) or not all(
            re.fullmatch(r"-?\d{1,3}(?:\.\d{3})+", v) for v in dotted
        ):
            continue
        proposal.spec = spec
        if whole:
            spec.update({"decimal": ",", "thousands": "."})
            proposal.checks.append(
                f"every '.' is followed by three digits, in {', '.join(sorted(codes))} (whole "
                f"units): read as thousands ({dotted[0]} = {dotted[0].replace('.', '')})"
            )
        else:
            proposal.checks.append(
                f"every '.' is followed by three digits ({dotted[0]}): read as decimals; if "
                f"they are thousands ({dotted[0]} = {dotted[0].replace('.', '')}), say "
                "thousands: '.' and decimal: ','"
            )


# Names of several words a value of the goods goes by (customs value, invoice value)
_GOODS_VALUE_NAMES = tuple(n for n in SYNONYMS["declared_value"] if " " in n)


def _names_goods_value(column: Column) -> bool:
    return bool(_said(column, _DELIVERY_TERMS) or _said(column, _GOODS_VALUE_NAMES))


def _other_goods_values(
    columns: list[Column], proposals: dict[str, Proposal], used: set[str]
) -> None:
    """A CHECK on ``declared_value`` naming the columns left that hold a value of the goods too
    (CIF beside FOB): the names tie, so the first in the file was taken, unsaid (probe, DATE's
    layout); which one is the contract's is for a person to say."""
    proposal = proposals.get("declared_value")
    if proposal is None:
        return
    for column in columns:
        if column.name in used or column.filled == 0 or not _names_goods_value(column):
            continue
        if _number_style(column) is None and _money(column) is None:
            continue
        if _said(column, _PER_UNIT_WORDS):
            continue  # a unit price is no value of the parcel
        proposal.checks.append(
            f"{column.name} also holds a value of the goods: the contract's declared_value is "
            "the goods' intrinsic value (FOB-like); keep the other as an amount extra if it "
            "carries risk"
        )


def _revenue_currency_column(
    columns: list[Column], proposals: dict[str, Proposal], used: set[str]
) -> None:
    """In a results draft, a column of currency codes or signs beside the recovered amounts
    is their currency: ``currency`` mapped to it and ``revenue_recovered: {currency: row}``,
    each amount put in EUR by its row's (a results file could give one code only: its
    draft asked "in which currency?" of `Direitos; Moeda`, probe 27)."""
    revenue = proposals.get("revenue_recovered")
    if revenue is None or not isinstance(revenue.spec, dict) or "currency" in revenue.spec:
        return
    found = [c for c in columns if c.name not in used and _unit_tokens(c) == "currency"]
    if len(found) != 1:  # none, or several: which is the revenue's is for a person to say
        return
    (column,) = found
    spec, checks = _currency_spec(column.name, column.values, part=False)
    proposals["currency"] = Proposal(
        spec,
        ["the currency of each recovered amount, read to put it in EUR (not kept)", *checks],
        column.name,
    )
    revenue.spec = {**revenue.spec, "currency": "row"}
    revenue.checks = [
        f"each amount in its row's currency, read from {column.name}"
        if check.startswith("in which currency?")
        else check
        for check in revenue.checks
    ]
    used.add(column.name)


def draft_mapping(
    raw: pd.DataFrame, *, timezone: str = "UTC", results: bool = False, **reading: Any
) -> Draft:
    """Propose a mapping for ``raw`` (an export as read, cells as text where the source has no
    types). ``results``: a file of inspection results (``outcomes ingest``): the declaration id
    and outcome fields only, no extras. ``reading``: top-level mapping keys of how it was read
    (delimiter, encoding)."""
    columns = profile(raw)
    fields = ["declaration_id", *_OUTCOMES] if results else _FIELD_ORDER
    chosen: dict[str, Column] = {}
    used: set[str] = set()
    for _, name, column in _candidates(columns, fields):
        if name in chosen or column.name in used:
            continue
        chosen[name] = column
        used.add(column.name)
    _fallbacks(columns, chosen, used, results)
    by_name = None if results else _description_by_name(columns, chosen, used)
    by_values = {} if results else _inspection_by_values(raw, columns, chosen, used)
    for name, (column, _) in by_values.items():
        chosen[name] = column
        used.add(column.name)
    weight = chosen.get("gross_weight_kg")
    unit = _weight_unit_column(columns, weight, used) if weight is not None else None
    if unit is not None:
        used.add(unit.name)
    proposals = {
        name: _propose(name, column, timezone, unit if name == "gross_weight_kg" else None)
        for name, column in chosen.items()
    }
    value = chosen.get("declared_value")
    money = _money(value) if value is not None else None
    if money is not None and "currency" not in proposals:
        # the currency written beside each amount: the one column read twice
        assert value is not None
        _, _, table, unread = money
        spec, checks = _currency_spec(
            value.name, [*table, *unread], part=True, named=_currency_named(value)
        )
        if unread:
            checks.append(
                f"signs not read: {', '.join(unread[:8])} (several currencies write them): map "
                "them in values (ingest refuses rows holding them)"
            )
        proposals["currency"] = Proposal(spec, checks, value.name)
    named = _currency_named(value) if value is not None else None
    if named is not None and "currency" not in proposals:
        assert value is not None
        proposals["currency"] = Proposal(
            {"value": named}, [f"{named} read from the name of {value.name}: every row in it"]
        )
    if results:
        _revenue_currency_column(columns, proposals, used)
    _dot_groups_of_three(chosen, proposals)
    _other_goods_values(columns, proposals, used)
    for name, column in chosen.items():
        if name in by_values:
            proposals[name].checks.insert(0, by_values[name][1])
            continue
        if name == "category" and _named_for_contents(column):
            proposals[name].checks.insert(0, _CATEGORY_NOT_DESCRIPTION)
            continue
        if name == "description" and by_name is not None:
            proposals[name].checks.insert(0, by_name)
            continue
        if name == "gross_weight_kg" and _name_score(column, name) == 0:
            # taken by the units in its cells (``_fallbacks``): the name says no weight
            proposals[name].checks.insert(0, _WEIGHT_BY_UNITS)
            continue
        if results and name == "revenue_recovered" and _name_score(column, name) == 0:
            proposals[name].checks.insert(0, _AMOUNT_RESULT_CHECK)
            continue
        # own country codes are chosen by a name saying country, and say so in their check
        if _name_score(column, name) == 0 and not (
            name == "origin_country" and _own_country_codes(column)
        ):
            proposals[name].checks.insert(0, "chosen by its values alone (the name says nothing)")
    given = [chosen.get(n) for n in ("illicit", "inspected_at")]
    # any blank: a census with a few results missing (DATE's file drops its rows without one)
    # was read as every row inspected, and the gate refused the blanks as results lost
    result = next((c for c in given if c is not None and c.filled < 1), None)
    if "inspected" not in proposals and result is not None:
        # the result (or its time) is given only for the parcels inspected: they are those
        # with one
        share = f"{result.filled:.0%}" if result.filled < 0.99 else f"{result.filled:.2%}"
        proposals["inspected"] = Proposal(
            {"column": result.name, "given": True},
            [f"inspected where {result.name} is given ({share} of the rows)"],
            result.name,
        )
    if not results and "inspected" not in proposals and any(n in proposals for n in _OUTCOMES):
        proposals["inspected"] = Proposal(
            {"value": True},
            [
                "no column says which parcels were inspected: every row is read as inspected "
                "(right for a census of results; else map the column that says it)"
            ],
        )
    _join_times_of_day(columns, proposals, used)
    if not results and "inspected_at" not in proposals:
        census = _census_result_time(chosen, proposals)
        if census is not None:
            proposals["inspected_at"] = census
            if "given" in proposals["inspected"].spec:
                # the date is on every row, the parcels inspected only those with a result
                reading = {**reading, "outcomes_only_if_inspected": True}
    if results:  # what a result must carry (serving.outcomes.REQUIRED_FIELDS)
        required = ["declaration_id", "inspected_at", "illicit"]
        missing = [name for name in required if name not in proposals]
    else:
        missing = [
            f.name
            for f in FIELDS
            if f.required and f.scope == "declaration" and f.name not in proposals
        ]
        if "inspected_at" not in proposals and any(n in proposals for n in _OUTCOMES):
            missing.append("inspected_at")  # the gate wants a result time where inspected
        if "illicit" not in proposals and any(n in proposals for n in _OUTCOMES):
            missing.append("illicit")  # and a result where inspected
    items = _items_block(raw, chosen, proposals)
    if _outcomes_on_every_row(raw, chosen, proposals):
        reading = {**reading, "outcomes_only_if_inspected": True}
    taken: set[str] = set()
    extras, extra_lines, ignored, personal = [], [], [], []
    inspected = None if results else _inspected_rows(raw, proposals)
    per_item = _differs_between_items(raw, chosen) if items is not None else set()
    likely = []
    if not results and "description" not in proposals:
        likely = [
            column  # a text the inspection fills (its remarks) is a result, never the goods'
            for column in _likely_descriptions(columns, used)
            if not _recorded_by_inspection(raw[column.name], column, inspected)
        ]
    suggested = {}
    if likely:
        # said, not mapped: free text may be remarks; a person uncomments the line
        suggested["description"] = (likely[0].name, _likely_description_check(likely[0]))
    # amounts in the row's currency only where the draft knows it (a TODO currency may be set
    # to one the amounts are not in)
    currency = proposals.get("currency")
    for position, column in enumerate(columns, start=1):
        if column.name in used:
            continue
        recorded = _recorded_by_inspection(raw[column.name], column, inspected)
        if not recorded and column.name in per_item:
            # an extra is the declaration's (agree): one an item row writes for itself (its
            # number, its own text or mass) stopped the draft's own try (probe, 2026-12)
            recorded = (
                "differs between the items of a declaration: an item's own (its number, text "
                "or mass); to keep it, give it a rule under items: (join, sum, max)"
            )
        entry = None if results or recorded else _extra(column, position, taken, currency)
        if entry is None:
            # the name as YAML writes it: a name holding a line break stays inside the comment
            why = _why_left_out_of_results(column) if results else recorded or _why_ignored(column)
            if likely and column is likely[0]:
                why += "; the likely goods description: see the description line"
            ignored.append(f"{_flow(column.name)} ({why})")
            continue
        extra_lines.append(entry)
        if entry[1].startswith("personal "):
            # drafted commented out: not read unless someone opts in, so not mapped
            personal.append(column.name)
            what = entry[1].removeprefix("personal ")
            ignored.append(
                f"{_flow(column.name)} (a private person's {what}: commented out under extras)"
            )
        else:
            extras.append(column.name)
    command = "parcelrisk outcomes ingest FILE --mapping" if results else "parcelrisk ingest"
    text = _render(proposals, missing, extra_lines, ignored, reading, items, command, suggested)
    checks = {n: p.checks for n, p in proposals.items() if p.checks}
    checks.update({n: [check] for n, (_, check) in suggested.items()})
    if reading.get("encoding_guessed"):
        checks["encoding"] = [f"not UTF-8: read as {reading['encoding']} (guessed)"]
    if len(extras) > MANY_EXTRAS:
        checks["extras"] = [f"{len(extras)} extras proposed: keep those that can carry risk"]
    return Draft(
        text=text,
        results=results,
        mapped={n: p.source or "constant" for n, p in proposals.items()},
        checks=checks,
        missing=missing,
        extras=extras,
        ignored=ignored,
        personal=personal,
    )


# What to write for a required field no column was found for.
_TODO_HINTS = {
    "currency": "; if every value is in one currency: {value: EUR}, its ISO 4217 code",
    "channel": "; if every parcel came one way: {value: postal}",
    "arrival_office": "; if the export is one office's: {value: OFFICE_CODE}",
    "inspected_at": (
        "; when the results were known: the declaration's date a day later is "
        '{column: <its date column>, offset: "1 day"}'
    ),
    "illicit": "; the column saying what the inspection found, with its yes/no words",
}


def _flow(value: Any) -> str:
    """``value`` as one line of YAML (a name holding a line break is written escaped)."""
    options = {"default_flow_style": True, "allow_unicode": True, "width": 10_000}
    text = yaml.safe_dump(value, sort_keys=False, **options).strip().removesuffix("...").strip()
    if "\n" in text:
        text = yaml.safe_dump(value, sort_keys=False, default_style='"', **options).strip()
    return text


# Extras above which the draft asks a person to keep only those that matter
MANY_EXTRAS = 30


def _render(
    proposals: dict[str, Proposal],
    missing: list[str],
    extras: list[tuple[dict, str]],
    ignored: list[str],
    reading: dict[str, Any],
    items: tuple[dict[str, str], str] | None = None,
    command: str = "parcelrisk ingest",
    suggested: dict[str, tuple[str, str]] | None = None,
) -> str:
    """The draft's YAML. ``suggested``: field -> (column, check) of a field not mapped whose
    likely column is written as a commented line for a person to uncomment."""
    lines = [
        "# Drafted by `parcelrisk mapping draft`: check every line marked CHECK, map every TODO,",
        f"# then run `{command}`. Nothing here is final until a person has read it.",
    ]
    for key, value in reading.items():
        if key == "encoding_guessed":
            continue
        if key == "encoding" and reading.get("encoding_guessed"):
            pages = {**CODE_PAGES, **EAST_ASIAN_PAGES}
            others = ", ".join(f"{p} {n}" for p, n in pages.items() if p != value)
            lines.append(
                f"encoding: {value}  # CHECK: not UTF-8; read as {value} ({pages[value]}) "
                f"by its letters: look at the names and text below (else: {others})"
            )
        elif key == "outcomes_only_if_inspected":
            lines.append(
                f"{key}: true  # CHECK: results are written on parcels not inspected too; "
                "they are read as empty there"
            )
        elif value is not None:
            lines.append(f"{key}: {_flow(value)}")
    # no field found (a header without rows): an empty mapping, not YAML's null
    lines.append("columns:" if proposals else "columns: {}  # no field found: map the TODOs")
    for name in _FIELD_ORDER:
        if name in missing:
            hint = _TODO_HINTS.get(name, "")
            with_results = name in ("inspected_at", "illicit")
            required = "required with results" if with_results else "required"
            lines.append(f"  # {name}: TODO ({required}; no column found{hint})")
            continue
        proposal = proposals.get(name)
        if proposal is None:
            if suggested and name in suggested:
                column, check = suggested[name]
                lines.append(f"  # {name}: {_flow(column)}  # CHECK: {check}")
            continue
        note = f"  # CHECK: {'; '.join(proposal.checks)}" if proposal.checks else ""
        lines.append(f"  {name}: {_flow(proposal.spec)}{note}")
    if items is not None:
        rules, why = items
        lines.append(f"items:  # CHECK: {why}")
        lines += [f"  {name}: {rule}" for name, rule in rules.items()]
    active = [kind for _, kind in extras if not kind.startswith("personal ")]
    if len(active) > MANY_EXTRAS:
        lines.append(
            f"# CHECK: {len(active)} extras below: each is a model input and a reason the "
            "service may give; keep those your analysts know can carry risk"
        )
    if extras:
        header = "extras:  # columns kept beyond the contract; kinds guessed from the values"
        # a key with only comments below is YAML's null, which a mapping refuses
        lines.append(header if active else f"# {header}; uncomment it with a line below")
        for entry, kind in extras:
            if kind.startswith("personal "):
                # data minimisation: a person's particular beyond consignee_id is read only
                # when someone opts in (probe 18: the name, phone and e-mail were features)
                what = kind.removeprefix("personal ")
                fold = ", whatever its case" if entry.get("fold") else ""
                lines.append(
                    f"  # - {_flow(entry)}  # CHECK: PERSONAL (a private person's {what}): not "
                    "mapped, so it is never read; uncomment to build its history as a feature, "
                    f"held as a keyed pseudonym{fold}"
                )
                continue
            note = {
                "amount to check": "  # CHECK: an amount in the rows' currency (the TODO "
                "above); drop amount: true if it is in another",
            }.get(kind, "")
            lines.append(f"  - {_flow(entry)}{note}")
    if ignored:
        lines.append("# not mapped: " + "; ".join(ignored))
    return "\n".join(lines) + "\n"


def _item_list_column(raw: pd.DataFrame) -> str | None:
    """The column of a JSON or XML export holding each record's goods items (a list of
    objects, read as its JSON text) in most records that have it; the one filled most often
    when several do. None when no column does."""
    best, filled = None, 0
    for name in raw.columns:
        cells = raw[name].dropna().astype(str)
        if cells.empty:
            continue
        lists = cells.str.startswith("[{").mean()
        if lists >= 0.5 and len(cells) > filled:
            best, filled = str(name), len(cells)
    return best


# Single-byte code pages a text export that is not UTF-8 is tried in, the first the default:
# the one whose reading of the file's non-ASCII bytes gives the fewest non-letters is proposed.
# Polish text in cp1252 reads "³ódzkie", "Krewetki mro¿one": symbols where letters belong.
CODE_PAGES = {
    "cp1252": "Western European",
    "cp1250": "Central European",
    "cp1251": "Cyrillic",
    "cp1254": "Turkish",
    "cp1253": "Greek",
}
EAST_ASIAN_PAGES = {
    "cp932": "Japanese",
    "cp949": "Korean",
    "gb18030": "Chinese",
    "cp950": "Traditional Chinese (Big5)",
}
_CODE_PAGE_SAMPLE = 1 << 20  # bytes looked at


def guess_code_page(path: Path) -> str:
    """The East Asian code page that reads a file's first megabyte as its script
    (``east_asian_code_page``), else the code page of ``CODE_PAGES`` that reads it with the
    fewest characters that are not letters among its non-ASCII ones (ties to the first
    listed); a code page missing one of its bytes is out."""
    from features.intake.io import east_asian_code_page, open_bytes

    with open_bytes(path) as fh:
        sample = fh.read(_CODE_PAGE_SAMPLE)
    if (east_asian := east_asian_code_page(sample)) is not None:
        return east_asian
    high = bytes(b for b in set(sample) if b >= 0x80)
    if not high:
        return "cp1252"
    counts = {b: sample.count(bytes([b])) for b in high}
    best, best_score = "cp1252", None
    for page in CODE_PAGES:
        try:
            chars = {b: bytes([b]).decode(page) for b in high}
        except UnicodeDecodeError:
            continue
        score = sum(n for b, n in counts.items() if not chars[b].isalpha())
        if best_score is None or score < best_score:
            best, best_score = page, score
    if best == "cp1252" and _turkish_in_western(counts):
        return "cp1254"
    return best


# Bytes cp1252 reads as the Icelandic letters Ý ý Þ þ Ð ð and cp1254 as the Turkish İ ı Ş ş Ğ
# ğ: both read them as letters, so the count above ties and cp1252, listed first, won; a
# Turkish export was drafted in mojibake (GÜMRÜK ÝDARESÝ) and six fields missed (probe).
_TURKISH_IN_CP1252 = frozenset(b"\xdd\xfd\xde\xfe\xd0\xf0")
# ... and bytes of letters Icelandic writes and Turkish never does (á é í ó ú æ, capitals too)
_ICELANDIC_ONLY = frozenset(b"\xe1\xe9\xed\xf3\xfa\xe6\xc1\xc9\xcd\xd3\xda\xc6")


def _turkish_in_western(counts: dict[int, int]) -> bool:
    """Whether a sample cp1252 reads as letters holds the Turkish-only letters of cp1254 and
    none of the letters an Icelandic text would hold beside them."""
    return bool(set(counts) & _TURKISH_IN_CP1252) and not set(counts) & _ICELANDIC_ONLY


def read_for_draft(
    path: Path, *, sheet: str | None = None, records: str | None = None, encoding: str | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """An export read as ``ingest`` would read it with a mapping naming no column: its cells,
    and how it was read (``encoding`` when not UTF-8, a CSV's ``delimiter``, the ``sheet`` of a
    workbook, the key of a JSON document's ``records``), for the draft. ``encoding``: the
    file's, when known; else UTF-8, or the code page ``guess_code_page`` reads it in (marked
    to check in the draft)."""
    from features.errors import ParcelriskError
    from features.intake.io import first_lines, header_line, is_csv, sniff_delimiter
    from features.intake.jsonsrc import is_json, read_json_source
    from features.intake.mapping import Mapping, read_source
    from features.intake.xmlsrc import is_xml, read_xml_source

    reading: dict[str, Any] = {"sheet": sheet, "records": records}
    if encoding is None and is_csv(path):
        from features.intake.io import open_bytes

        with open_bytes(path) as fh:
            start = fh.read(2)
        if start in (b"\xff\xfe", b"\xfe\xff"):
            # Excel's "Unicode text": read as UTF-8 it looked like a file cut short; ingest
            # names the encoding, so the draft takes it (probe, 2026-12)
            encoding = "utf-16"
    given = encoding is not None and codecs.lookup(encoding).name != "utf-8"
    if given:
        reading["encoding"] = encoding
    try:
        raw = read_source(
            path, Mapping(columns={}, sheet=sheet, records=records, encoding=encoding or "utf-8")
        )
    except ParcelriskError as exc:
        said = str(exc)
        if sheet is None and "sheet: " in said:
            raise ParcelriskError(f"{said} (to draft: --sheet NAME)") from exc
        if records is None and "records: KEY" in said:
            raise ParcelriskError(f"{said} (to draft: --records KEY)") from exc
        if encoding is not None:
            raise ParcelriskError(f"{said} (read with --encoding {encoding})") from exc
        if "utf-8" not in said.lower():
            raise
        # a Windows export: read in the code page its letters say, and the draft says so
        page = guess_code_page(path)
        reading["encoding"] = page
        reading["encoding_guessed"] = True
        try:
            raw = read_source(
                path, Mapping(columns={}, sheet=sheet, records=records, encoding=page)
            )
        except ParcelriskError as again:
            raise ParcelriskError(
                f"{again} (to draft a file in another encoding: --encoding NAME)"
            ) from again
    items = _item_list_column(raw) if is_json(path) or is_xml(path) else None
    if items is not None:
        # goods items nested in each record (H7, ICS2, a postal operator's messages): one row
        # each, as the mapping will read them (its ``items:`` block is drafted below)
        if is_json(path):
            encoding = reading.get("encoding", "utf-8")
            raw = read_json_source(path, encoding=encoding, records=records, explode=items)
        else:
            raw = read_xml_source(path, records=records, explode=items)
        reading["explode"] = items
    if len(raw.columns) > MAX_COLUMNS:
        raise ParcelriskError(
            f"{path}: {len(raw.columns):,} columns; a declarations export has tens, and a "
            f"draft reads at most {MAX_COLUMNS:,} (write the mapping of such a file by hand)"
        )
    control = [str(c) for c in raw.columns if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", str(c))]
    if control:
        raise ParcelriskError(
            f"{path}: the header holds control bytes ({_flow(control[0])}): binary data, not a "
            "text export"
        )
    if is_csv(path):
        encoding = reading.get("encoding", "utf-8")
        skip = header_line(first_lines(path, encoding))
        reading["delimiter"] = sniff_delimiter(path, encoding, skip=skip)
    return raw, reading


def try_draft(
    source: Path,
    raw: pd.DataFrame,
    draft: Draft,
    *,
    fx_to_base: dict[str, float] | None = None,
    timezone: str | None = None,
    limits: Any = None,
) -> str:
    """One line on how the draft reads ``source``: every row, and the gate's verdict on them
    (a results draft: every result converted; the store checks results when they are stored);
    or the first problem, as ``ingest`` would say it."""
    from features.errors import ParcelriskError
    from features.intake.mapping import map_outcomes, parse_mapping_text, read_export
    from features.intake.validation import check_declarations

    try:
        mapping = parse_mapping_text(draft.text, origin="the draft")
        if draft.results:
            mapped, _ = map_outcomes(raw, mapping, fx_to_base)
            if draft.missing:  # `outcomes ingest` refuses results without them
                return (
                    f"the draft does not read {source} yet: results need "
                    f"{', '.join(draft.missing)} (TODO in the draft); its {len(mapped):,} rows "
                    "read otherwise"
                )
            return f"the draft reads all {len(mapped):,} results of {source}"
        read = read_export(source, mapping, eur_rates=fx_to_base, timezone=timezone)
    except ParcelriskError as exc:
        return f"the draft does not read {source} yet: {exc}"
    tried = f"the draft reads all {len(read.declarations):,} rows of {source}"
    if limits is not None:
        gate, _ = check_declarations(read.declarations, read.contract, limits)
        if not gate.success:
            faults = [line for line in gate.render().splitlines() if line.startswith("FAULT")]
            tried += f", but the gate refuses them: {'; '.join(faults[:3]) or gate.render()}"
    return tried
